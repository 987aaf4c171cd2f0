import Appliance
import Foundation
import SDBoxCore
import Testing

/// Model hashes remembered by file identity: a file known by its device, inode, size and modification
/// time is not read again. Each test proves it by changing a file's bytes behind the cache's back while
/// keeping its identity: the cache still answers the old hash, which it could only have remembered.
@Suite struct ChecksumCacheTests {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("checksums-\(UUID().uuidString)").path

    init() throws { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }

    /// Overwrites the file's bytes in place (same inode, same size) and puts its modification time back.
    func overwriteKeepingIdentity(_ path: String, with bytes: Data) throws {
        var before = stat()
        #expect(stat(path, &before) == 0)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.write(contentsOf: bytes)
        try handle.close()
        let times = [before.st_atim, before.st_mtim]
        #expect(utimensat(AT_FDCWD, path, times, 0) == 0)
    }

    @Test func aKnownFileIsNotReadAgainAndAChangedOneIs() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/a.safetensors"
        try Data(repeating: 1, count: 4096).write(to: URL(fileURLWithPath: path))
        let cache = ChecksumCache(file: folder + "/cache.json")
        let first = try cache.sha256(ofFileAt: path)
        #expect(try first == Checkpoint.sha256(ofFileAt: path))
        try overwriteKeepingIdentity(path, with: Data(repeating: 2, count: 4096))
        #expect(try cache.sha256(ofFileAt: path) == first, "same identity: remembered, not read")
        // Renamed: the same inode, so still known.
        try FileManager.default.moveItem(atPath: path, toPath: folder + "/b.safetensors")
        #expect(try cache.sha256(ofFileAt: folder + "/b.safetensors") == first)
        // A new modification time is a new identity: read again.
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 10)], ofItemAtPath: folder + "/b.safetensors")
        let second = try cache.sha256(ofFileAt: folder + "/b.safetensors")
        let actual = try Checkpoint.sha256(ofFileAt: folder + "/b.safetensors")
        #expect(second != first && second == actual)
    }

    @Test func itOutlivesTheProcessAndRemembersUploads() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/up.safetensors"
        try Data(repeating: 3, count: 1000).write(to: URL(fileURLWithPath: path))
        ChecksumCache(file: folder + "/cache.json").remember("feed", forFileAt: path)
        let reopened = ChecksumCache(file: folder + "/cache.json")
        #expect(reopened.count == 1)
        #expect(try reopened.sha256(ofFileAt: path) == "feed", "an upload's streamed hash is taken as it is")
        try "not json".write(toFile: folder + "/cache.json", atomically: true, encoding: .utf8)
        #expect(ChecksumCache(file: folder + "/cache.json").count == 0, "a damaged cache is an empty one")
    }
}

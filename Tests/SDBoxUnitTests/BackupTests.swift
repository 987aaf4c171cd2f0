@testable import Appliance
@testable import Archive
import Foundation
import SDBoxCore
import Storage
import Testing

@Suite struct TarTests {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory()
    }

    /// Writes an archive with `body` and returns its path.
    func archive(_ body: (TarWriter) throws -> Void) throws -> String {
        let path = directory.path + "/test-\(UUID().uuidString).tar"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        defer { close(fd) }
        let tar = TarWriter(fileDescriptor: fd)
        try body(tar)
        try tar.finish()
        return path
    }

    /// Every member of the archive at `path` with its contents.
    func members(of path: String) throws -> [(TarEntry, Data)] {
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        let tar = TarReader(fileDescriptor: fd)
        var members: [(TarEntry, Data)] = []
        while let entry = try tar.next() { members.append((entry, try tar.readContents(limit: 16 << 20))) }
        return members
    }

    @Test func filesRoundTripWithLongNamesModesAndNanosecondTimes() throws {
        let longName = "objects/images/" + String(repeating: "a", count: 90) + "/" + String(repeating: "b", count: 40) + ".png"
        #expect(longName.utf8.count > 100)
        var generator = SplitMix64(seed: 7)
        let big = Data((0..<(3 << 20) + 123).map { _ in UInt8.random(in: 0...255, using: &generator) })  // more than one 1 MiB buffer
        let bigFile = directory.path + "/big.bin"
        try big.write(to: URL(fileURLWithPath: bigFile))
        chmod(bigFile, 0o600)
        var times = [timespec(tv_sec: 1_700_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_700_000_000, tv_nsec: 123_456_789)]
        utimensat(AT_FDCWD, bigFile, &times, 0)
        let path = try archive { tar in
            try tar.add(Data("{}".utf8), as: "manifest.json", modified: timespec(tv_sec: 1_600_000_000, tv_nsec: 0))
            try tar.add(Data(), as: "empty", modified: timespec(tv_sec: 1_600_000_000, tv_nsec: 0))
            try tar.add(Data("long".utf8), as: longName, mode: 0o640, modified: timespec(tv_sec: 1_600_000_001, tv_nsec: 5))
            #expect(try tar.addFile(atPath: bigFile, as: "models/big.bin") == Int64(big.count))
            #expect(try tar.addFile(atPath: directory.path + "/gone", as: "gone") == nil, "a file removed since it was listed is skipped")
        }
        let members = try members(of: path)
        #expect(members.map(\.0.path) == ["manifest.json", "empty", longName, "models/big.bin"])
        #expect(members[1].1.isEmpty && members[2].1 == Data("long".utf8) && members[3].1 == big)
        #expect(members[2].0.mode == 0o640 && members[2].0.modified.tv_sec == 1_600_000_001 && members[2].0.modified.tv_nsec == 5)
        #expect(members[3].0 == TarEntry(path: "models/big.bin", mode: 0o600, size: Int64(big.count), modified: times[0]))
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(size % 512 == 0)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/tar")))
    func gnuTarReadsTheArchive() throws {
        let longName = "objects/" + String(repeating: "x", count: 120) + ".png"
        let path = try archive { tar in
            try tar.add(Data("hello".utf8), as: "a/b.txt", modified: timespec(tv_sec: 1_600_000_000, tv_nsec: 250_000_000))
            try tar.add(Data("long".utf8), as: longName, modified: timespec(tv_sec: 1_600_000_000, tv_nsec: 0))
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
        process.arguments = ["-tf", path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let listing = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(listing.split(separator: "\n") == ["a/b.txt", Substring(longName)])
    }

    @Test func sizesBeyondEightGiBGoInAPaxRecord() throws {
        let huge = Int64(9) << 30
        let path = try archive { tar in
            // The header alone: the reader is asked for the entry, not its nine gigabytes.
            try tar.writeHeader(TarEntry(path: "models/huge.safetensors", size: huge, modified: timespec(tv_sec: 1, tv_nsec: 0)))
        }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        #expect(try TarReader(fileDescriptor: fd).next()?.size == huge)
    }

    /// An archive of one raw header (with no contents) named `name` of ustar type `type`.
    func rawArchive(name: String, type: Character) throws -> String {
        try archive { tar in try tar.write(TarWriter.header(name: name, mode: 0o644, size: 0, modified: 0, type: type)) }
    }

    @Test func unsafePathsAndLinksAreRefused() throws {
        for name in ["../escape", "/etc/passwd", "objects/../../escape", "a//b", "./a"] {
            #expect(TarEntry.problem(withPath: name) != nil, "\(name)")
            #expect(throws: TarError.self, "\(name)") { try members(of: try rawArchive(name: name, type: "0")) }
            #expect(throws: TarError.self, "the writer refuses \(name) too") {
                try archive { tar in try tar.add(Data(), as: name, modified: timespec()) }
            }
        }
        #expect(throws: TarError.self, "symbolic link") { try members(of: try rawArchive(name: "objects/link", type: "2")) }
        #expect(throws: TarError.self, "hard link") { try members(of: try rawArchive(name: "objects/link", type: "1")) }
        // A damaged header is not read as one.
        let damaged = directory.path + "/damaged.tar"
        try Data(repeating: 0x41, count: 1024).write(to: URL(fileURLWithPath: damaged))
        #expect(throws: TarError.self) { try members(of: damaged) }
        #expect(TarEntry.problem(withPath: "objects/images/default/a_1.png") == nil)
    }
}

@Suite struct DataFolderBackupTests {
    let directory: TemporaryDirectory

    init() throws {
        directory = try TemporaryDirectory()
    }

    func write(_ text: String, at path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    @Test func aBackupRestoresTheDatabaseFilesAndTimesButNoTemporaryFiles() async throws {
        let source = DataFolder(directory.path + "/data")
        let database = try Database(path: source.database)
        let (key, _) = APIKeyRecord.make(user: "alice", role: .user)
        try await LMDBKeyStore(database: database).insert(key)
        try write("png", at: source.objects + "/images/alice/t_1.png")
        try write("half", at: source.objects + "/images/alice/.tmp-123")
        try write("secret", at: source.urlSigningKey)
        try write("weights", at: source.models + "/Stable-diffusion/m.safetensors")
        try write("{}", at: source.models + "/" + ChecksumCache.defaultFileName)
        try write("x", at: source.models + "/Stable-diffusion/.upload-1")
        try write("dataDir: /elsewhere\n", at: directory.path + "/sdbox.yaml")
        var times = [timespec(tv_sec: 1_700_000_000, tv_nsec: 987_654_321), timespec(tv_sec: 1_700_000_000, tv_nsec: 987_654_321)]
        utimensat(AT_FDCWD, source.models + "/Stable-diffusion/m.safetensors", &times, 0)

        let archive = directory.path + "/backup.tar"
        let summary = try DataFolderBackup.backup(of: source, configurationFile: directory.path + "/sdbox.yaml", withModels: true, to: archive)
        #expect(summary.objectFiles == 1 && summary.modelFiles == 2 && summary.databaseBytes > 0)
        #expect(summary.manifest.contents == ["database", "objects", "secrets", "configuration", "models"])
        #expect(throws: BackupError.self, "an existing archive is not overwritten") {
            try DataFolderBackup.backup(of: source, configurationFile: nil, withModels: false, to: archive)
        }

        let target = DataFolder(directory.path + "/restored")
        let restored = try await DataFolderBackup.restore(from: archive, into: target)
        #expect(restored.counts == Database.Counts(tasks: 0, models: 0, keys: 1, users: 0))
        #expect(try await LMDBKeyStore(database: try Database(path: target.database)).list().map(\.id) == [key.id])
        #expect(FileManager.default.contents(atPath: target.objects + "/images/alice/t_1.png") == Data("png".utf8))
        #expect(FileManager.default.contents(atPath: target.urlSigningKey) == Data("secret".utf8))
        #expect(FileManager.default.contents(atPath: target.path + "/sdbox.yaml") == Data("dataDir: /elsewhere\n".utf8))
        #expect(FileManager.default.fileExists(atPath: target.models + "/" + ChecksumCache.defaultFileName))
        #expect(!FileManager.default.fileExists(atPath: target.objects + "/images/alice/.tmp-123"))
        #expect(!FileManager.default.fileExists(atPath: target.models + "/Stable-diffusion/.upload-1"))
        var status = stat()
        stat(target.models + "/Stable-diffusion/m.safetensors", &status)
        #expect(status.st_mtim.tv_sec == times[0].tv_sec && status.st_mtim.tv_nsec == times[0].tv_nsec)

        // Not into a folder that holds anything; and not from an archive that is not a backup.
        await #expect(throws: BackupError.self) { try await DataFolderBackup.restore(from: archive, into: target) }
        let notBackup = directory.path + "/plain.tar"
        let fd = open(notBackup, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        let tar = TarWriter(fileDescriptor: fd)
        try tar.add(Data("x".utf8), as: "db/data.mdb", modified: timespec())
        try tar.finish()
        close(fd)
        let empty = directory.path + "/empty"
        await #expect(throws: BackupError.self) { try await DataFolderBackup.restore(from: notBackup, into: DataFolder(empty)) }
        #expect(!FileManager.default.fileExists(atPath: empty), "a failed restore leaves no folder it made")
    }
}

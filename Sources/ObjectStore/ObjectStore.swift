import Foundation
import NIOPosix
import SDBoxCore

/// Why an object key or write was refused.
public enum ObjectStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidKey(String)
    case notFound(String)
    case writeFailed(key: String, reason: String)

    public var description: String {
        switch self {
        case .invalidKey(let key): "invalid object key '\(key)'"
        case .notFound(let key): "object '\(key)' not found"
        case .writeFailed(let key, let reason): "could not store '\(key)': \(reason)"
        }
    }
}

/// Files under one root folder, addressed by slash-separated keys such as `images/default/abc_1.png`.
///
/// Writes are atomic: the bytes go to a temporary file in the same folder, are fsync'd, then renamed into
/// place, so a reader never sees half a file and a crash leaves none. Keys are checked so that no key can
/// reach outside the root (no `..`, no absolute paths, no hidden components). File I/O runs on a thread pool.
public struct ObjectStore: Sendable {
    public let root: String
    let threadPool: NIOThreadPool

    public init(root: String, threadPool: NIOThreadPool = .singleton) throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        self.root = URL(fileURLWithPath: root).standardizedFileURL.path
        self.threadPool = threadPool
    }

    /// The key for output image `index` (1-based) of a task.
    public static func imageKey(user: String, taskID: String, index: Int) -> String {
        "images/\(user)/\(taskID)_\(index).png"
    }

    /// Checks a key and returns the file path it names.
    public func path(for key: String) throws(ObjectStoreError) -> String {
        let components = key.split(separator: "/", omittingEmptySubsequences: false)
        guard !key.isEmpty, key.utf8.count <= 1024, !components.isEmpty,
            components.allSatisfy({ component in
                !component.isEmpty && !component.hasPrefix(".") && !component.contains("\\")
                    && !component.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
            })
        else {
            throw .invalidKey(key)
        }
        return root + "/" + key
    }

    /// Stores `data` under `key`, atomically.
    public func put(_ data: Data, key: String) async throws {
        let path = try path(for: key)
        try await threadPool.runIfActive {
            try Self.writeAtomically(data, to: path, key: key)
        }
    }

    /// The bytes stored under `key`.
    public func get(_ key: String) async throws -> Data {
        let path = try path(for: key)
        return try await threadPool.runIfActive {
            guard let data = FileManager.default.contents(atPath: path) else { throw ObjectStoreError.notFound(key) }
            return data
        }
    }

    /// Removes the object stored under `key`, if any.
    public func delete(_ key: String) async throws {
        let path = try path(for: key)
        try await threadPool.runIfActive {
            if unlink(path) != 0 && errno != ENOENT {
                throw ObjectStoreError.writeFailed(key: key, reason: String(cString: strerror(errno)))
            }
        }
    }

    static func writeAtomically(_ data: Data, to path: String, key: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw ObjectStoreError.writeFailed(key: key, reason: "cannot create folder: \(error.localizedDescription)")
        }
        let temporary = folder + "/.tmp-" + TaskID.make()
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ObjectStoreError.writeFailed(key: key, reason: String(cString: strerror(errno))) }
        var failure: String?
        data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    return
                }
                offset += n
            }
        }
        if failure == nil && fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        close(fd)
        if failure == nil && rename(temporary, path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(temporary)
            throw ObjectStoreError.writeFailed(key: key, reason: failure)
        }
        let dirfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 {
            fsync(dirfd)
            close(dirfd)
        }
    }
}

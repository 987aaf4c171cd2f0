import Foundation
import NIOPosix
import SDBoxCore

/// Why an object key or write was refused.
public enum ObjectStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidKey(String)
    case notFound(String)
    case writeFailed(key: String, reason: String)
    /// The disk is full, or writing would leave less free space than the store keeps in reserve.
    case diskFull(key: String, reason: String)

    public var isDiskFull: Bool {
        if case .diskFull = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .invalidKey(let key): "invalid object key '\(key)'"
        case .notFound(let key): "object '\(key)' not found"
        case .writeFailed(let key, let reason): "could not store '\(key)': \(reason)"
        case .diskFull(let key, let reason): "disk full: could not store '\(key)': \(reason)"
        }
    }
}

/// What the store knows of one object on disk.
public struct ObjectInfo: Sendable, Equatable {
    /// The file's real path (symbolic links resolved, inside the store's root).
    public let path: String
    public let size: Int
    /// A strong entity tag that changes whenever the object is replaced: its size and modification time.
    public let etag: String
}

/// Files under one root folder, addressed by slash-separated keys such as `images/default/abc_1.png`.
///
/// Writes are atomic: the bytes go to a temporary file in the same folder, are fsync'd, then renamed into
/// place, so a reader never sees half a file and a crash leaves none; the root may be on NFS (no file
/// locks are used). Keys are checked so that no key can reach outside the root: no `..`, no absolute
/// paths, no hidden components, and no symbolic link leading out (real paths are checked). A write that
/// would leave less than `minimumFreeBytes` free on the disk is refused as ``ObjectStoreError/diskFull(key:reason:)``.
/// File I/O runs on a thread pool.
public struct ObjectStore: Sendable {
    public let root: String
    /// The root with symbolic links resolved, against which real paths are checked.
    let realRoot: String
    let minimumFreeBytes: Int64
    let threadPool: NIOThreadPool

    public init(root: String, minimumFreeBytes: Int64 = 0, threadPool: NIOThreadPool = .singleton) throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        self.root = URL(fileURLWithPath: root).standardizedFileURL.path
        guard let real = Self.realPath(self.root) else {
            throw ObjectStoreError.writeFailed(key: root, reason: "cannot resolve the object root: \(String(cString: strerror(errno)))")
        }
        self.realRoot = real
        self.minimumFreeBytes = minimumFreeBytes
        self.threadPool = threadPool
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
        try await put([(data, key)])
    }

    /// Stores several objects (a task's images), each atomically, with one sync of each folder for them
    /// all; when one cannot be written, none of them is left.
    public func put(_ objects: [(data: Data, key: String)]) async throws {
        let paths = try objects.map { try path(for: $0.key) }
        let (realRoot, reserve) = (self.realRoot, minimumFreeBytes)
        try await threadPool.runIfActive {
            for (object, path) in zip(objects, paths) {
                try Self.checkStaysInside(realRoot, path: path, key: object.key)
            }
            try Self.checkFreeSpace(at: realRoot, adding: objects.reduce(0) { $0 + $1.data.count }, reserve: reserve, key: objects.first?.key ?? "")
            var temporaries: [String] = []
            var placed: [String] = []
            do {
                for (object, path) in zip(objects, paths) {
                    temporaries.append(try Self.writeTemporary(object.data, beside: path, key: object.key))
                }
                for (index, (object, path)) in zip(objects, paths).enumerated() {
                    guard rename(temporaries[index], path) == 0 else { throw Self.failure(errno, key: object.key) }
                    placed.append(path)
                }
            } catch {
                for path in temporaries.dropFirst(placed.count) + placed { unlink(path) }
                throw error
            }
            for folder in Set(paths.map { ($0 as NSString).deletingLastPathComponent }) { Self.syncFolder(folder) }
        }
    }

    /// The bytes stored under `key`.
    public func get(_ key: String) async throws -> Data {
        let info = try await info(key)
        return try await threadPool.runIfActive {
            guard let data = FileManager.default.contents(atPath: info.path) else { throw ObjectStoreError.notFound(key) }
            return data
        }
    }

    /// Whether an object is stored under `key`.
    public func exists(_ key: String) async throws -> Bool {
        do {
            _ = try await info(key)
            return true
        } catch ObjectStoreError.notFound {
            return false
        }
    }

    /// The object stored under `key`: its real path, size and entity tag. Throws
    /// ``ObjectStoreError/notFound(_:)`` when there is none, and ``ObjectStoreError/invalidKey(_:)`` when
    /// the key, or a symbolic link on its way, leads outside the root.
    public func info(_ key: String) async throws -> ObjectInfo {
        let path = try path(for: key)
        let realRoot = self.realRoot
        return try await threadPool.runIfActive {
            guard let real = Self.realPath(path) else { throw ObjectStoreError.notFound(key) }
            guard real.hasPrefix(realRoot + "/") else { throw ObjectStoreError.invalidKey(key) }
            var status = stat()
            guard stat(real, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { throw ObjectStoreError.notFound(key) }
            let nanoseconds = Int64(status.st_mtim.tv_sec) * 1_000_000_000 + Int64(status.st_mtim.tv_nsec)
            return ObjectInfo(
                path: real, size: Int(status.st_size),
                etag: "\"\(String(status.st_size, radix: 16))-\(String(nanoseconds, radix: 16))\""
            )
        }
    }

    /// Removes the object stored under `key`, if any.
    public func delete(_ key: String) async throws {
        let path = try path(for: key)
        let realRoot = self.realRoot
        try await threadPool.runIfActive {
            try Self.checkStaysInside(realRoot, path: path, key: key)
            if unlink(path) != 0 && errno != ENOENT {
                throw ObjectStoreError.writeFailed(key: key, reason: String(cString: strerror(errno)))
            }
        }
    }

    /// Removes every file under the folder `prefix` last modified before `cutoff` (left-over temporary
    /// files included), and the folders this empties. Symbolic links are removed, never followed.
    /// Returns how many files it removed.
    public func removeFiles(under prefix: String, modifiedBefore cutoff: Date) async throws -> Int {
        let folder = try path(for: prefix)
        return try await threadPool.runIfActive { Self.removeFiles(in: folder, modifiedBefore: cutoff.timeIntervalSince1970) }
    }

    static func removeFiles(in folder: String, modifiedBefore cutoff: Double) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return 0 }
        var removed = 0
        for name in names {
            let path = folder + "/" + name
            var status = stat()
            guard lstat(path, &status) == 0 else { continue }
            if (status.st_mode & S_IFMT) == S_IFDIR {
                removed += removeFiles(in: path, modifiedBefore: cutoff)
                rmdir(path)  // only an empty folder goes
            } else if Double(status.st_mtim.tv_sec) < cutoff, unlink(path) == 0 {
                removed += 1
            }
        }
        return removed
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Refuses a path whose nearest existing folder is, once symbolic links are resolved, outside the root.
    static func checkStaysInside(_ realRoot: String, path: String, key: String) throws {
        var folder = (path as NSString).deletingLastPathComponent
        while Self.realPath(folder) == nil, folder.count > 1 {
            folder = (folder as NSString).deletingLastPathComponent
        }
        guard let real = Self.realPath(folder), real == realRoot || real.hasPrefix(realRoot + "/") else {
            throw ObjectStoreError.invalidKey(key)
        }
    }

    static func checkFreeSpace(at folder: String, adding bytes: Int, reserve: Int64, key: String) throws {
        guard reserve > 0 else { return }
        var stats = statvfs()
        guard statvfs(folder, &stats) == 0 else { return }
        let free = Int64(stats.f_bavail) * Int64(stats.f_frsize)
        if free - Int64(bytes) < reserve {
            throw ObjectStoreError.diskFull(
                key: key, reason: "\(free >> 20) MiB free, \(reserve >> 20) MiB are kept in reserve (images.minFreeDiskMiB)"
            )
        }
    }

    /// Writes `data` at `path` so that readers see the old file or the whole new one, never part of it, and
    /// a crash keeps one of the two: a temporary file in the same folder, fsync, rename, fsync of the
    /// folder. A full disk is ``ObjectStoreError/diskFull(key:reason:)``; `key` names what was written.
    public static func writeAtomically(_ data: Data, to path: String, key: String) throws {
        let temporary = try writeTemporary(data, beside: path, key: key)
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw failure(code, key: key)
        }
        syncFolder((path as NSString).deletingLastPathComponent)
    }

    /// Writes `data` to a new temporary file in the folder of `path` (made if missing) and syncs it to disk;
    /// returns its path, to be renamed to `path`.
    static func writeTemporary(_ data: Data, beside path: String, key: String) throws -> String {
        let folder = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw ObjectStoreError.writeFailed(key: key, reason: "cannot create folder: \(error.localizedDescription)")
        }
        let temporary = folder + "/.tmp-" + TaskID.make()
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(errno, key: key) }
        var failed: Int32?
        data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failed = errno
                    return
                }
                offset += n
            }
        }
        if failed == nil && fsync(fd) != 0 { failed = errno }
        if close(fd) != 0 && failed == nil { failed = errno }  // NFS reports write errors at close
        if let failed {
            unlink(temporary)
            throw failure(failed, key: key)
        }
        return temporary
    }

    /// Syncs a folder, so that the names renamed into it survive a crash.
    public static func syncFolder(_ folder: String) {
        let dirfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 {
            fsync(dirfd)
            close(dirfd)
        }
    }

    static func failure(_ code: Int32, key: String) -> ObjectStoreError {
        let reason = String(cString: strerror(code))
        return code == ENOSPC || code == EDQUOT ? .diskFull(key: key, reason: reason) : .writeFailed(key: key, reason: reason)
    }
}

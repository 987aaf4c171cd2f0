import Crypto
import Foundation
import Glibc
import HTTPTypes
import NIOCore
import NIOPosix
import SDBoxCore

/// One model file being received, by upload or by an install from a link: streamed to a temporary file in
/// the model's own folder while its sha256 is computed, checked, fsync'd, and only then moved into place
/// under its name.
///
/// An upload that fails or is cut off leaves no file: the caller ends every upload with
/// ``ModelFileWriter/finish(expectedSHA256:)`` or ``ModelFileWriter/abort()``. An install may instead
/// ``ModelFileWriter/suspend()``, keeping its temporary file to resume from.
package struct ModelUpload: Sendable {
    let type: ModelType
    package let name: String
    let folder: String
    let overwrite: Bool
    let temporaryPath: String

    static let temporaryPrefix = ".upload-"

    /// An upload, or with `temporaryName` an install, whose temporary file keeps that name across restarts.
    init(type: ModelType, name: String, folder: String, overwrite: Bool, temporaryName: String? = nil) {
        self.type = type
        self.name = name
        self.folder = folder
        self.overwrite = overwrite
        self.temporaryPath = folder + "/" + (temporaryName ?? "\(Self.temporaryPrefix)\(UUID().uuidString)-\(name)")
    }

    var finalPath: String { folder + "/" + name }

    /// Whether a folder entry is the temporary file of an upload a crash cut off.
    static func isLeftover(_ entry: String) -> Bool { entry.hasPrefix(temporaryPrefix) }

    /// Whether the temporary file at `path` may be removed as left behind: at once on a box of its own
    /// (`age` 0), else (a models folder other boxes share, whose uploads and installs this box cannot
    /// know) only once it has not been written for `age` seconds.
    static func isAbandoned(_ path: String, age: TimeInterval) -> Bool {
        guard age > 0 else { return true }
        var status = stat()
        guard stat(path, &status) == 0 else { return false }
        return Date().timeIntervalSince1970 - TimeInterval(status.st_mtim.tv_sec) > age
    }

    /// What ``ModelFileWriter/finish(expectedSHA256:)`` placed.
    package struct Placed: Sendable {
        let sha256: String
        let size: Int64
        let modified: Date
    }

    /// Opens the temporary file for a ``ModelFileWriter``: a new one, or with `resuming` the one a
    /// suspended install left (created if missing), its bytes hashed again so that the writer goes on
    /// from its end.
    package func open(limit: Int64, threadPool: NIOThreadPool, resuming: Bool = false) async throws -> ModelFileWriter {
        let path = temporaryPath
        let (descriptor, hasher, size) = try await threadPool.runIfActive { () throws -> (Int32, SHA256, Int64) in
            let flags = resuming ? O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC : O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC
            let fd = Glibc.open(path, flags, 0o644)
            guard fd >= 0 else { throw APIError(.internalServerError, "cannot store model", detail: "\(path): \(String(cString: strerror(errno)))") }
            guard resuming else { return (fd, SHA256(), 0) }
            var hasher = SHA256()
            var size: Int64 = 0
            var chunk = [UInt8](repeating: 0, count: 4 << 20)
            while true {
                let count = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(size)) }
                if count < 0 && errno == EINTR { continue }
                guard count >= 0 else {
                    close(fd)
                    throw APIError(.internalServerError, "cannot store model", detail: "\(path): \(String(cString: strerror(errno)))")
                }
                if count == 0 { break }
                chunk.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
                size += Int64(count)
            }
            return (fd, hasher, size)
        }
        return ModelFileWriter(upload: self, descriptor: descriptor, limit: limit, threadPool: threadPool, resumedSize: size, resumedHash: hasher)
    }


    /// Moves the checked temporary file to its name: replacing an existing file only with `overwrite`.
    func place() throws {
        if overwrite {
            guard rename(temporaryPath, finalPath) == 0 else {
                throw APIError(.internalServerError, "cannot store model", detail: "rename: \(String(cString: strerror(errno)))")
            }
        } else {
            // link(2) fails if the name exists, so a name taken meanwhile is never replaced.
            guard link(temporaryPath, finalPath) == 0 else {
                if errno == EEXIST { throw APIError(.conflict, "model exists", detail: "\(type.rawValue)/\(name) exists; add ?overwrite=true to replace it") }
                throw APIError(.internalServerError, "cannot store model", detail: "link: \(String(cString: strerror(errno)))")
            }
            unlink(temporaryPath)
        }
        let directory = Glibc.open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }
}

/// Writes an upload's bytes to its temporary file as they arrive, hashing them on the way, then checks
/// and places the file.
///
/// Memory stays bounded whatever the file's size: at most two batches of ``batchBytes`` are held, one
/// being written (on the thread pool, never on an event loop) while the next is received.
package struct ModelFileWriter {
    let upload: ModelUpload
    let descriptor: Int32
    let limit: Int64
    let threadPool: NIOThreadPool
    private(set) var size: Int64 = 0
    var batch: [ByteBuffer] = []
    var batchSize = 0
    var pending: Task<SHA256, any Error>?

    /// Bytes gathered before they are written.
    static let batchBytes = 4 << 20

    init(upload: ModelUpload, descriptor: Int32, limit: Int64, threadPool: NIOThreadPool, resumedSize: Int64 = 0, resumedHash: SHA256 = SHA256()) {
        self.upload = upload
        self.descriptor = descriptor
        self.limit = limit
        self.threadPool = threadPool
        self.size = resumedSize
        self.pending = resumedSize > 0 ? Task { resumedHash } : nil
    }

    /// Bytes received so far (with those of a resumed file).
    package var received: Int64 { size }

    /// Empties the file and starts again from its first byte (an install whose site sent the whole file
    /// again rather than the rest).
    package mutating func startOver() async throws {
        _ = try await pending?.value
        let descriptor = self.descriptor
        try await threadPool.runIfActive {
            guard ftruncate(descriptor, 0) == 0 else {
                throw APIError(.internalServerError, "cannot store model", detail: "truncate: \(String(cString: strerror(errno)))")
            }
        }
        size = 0
        batch = []
        batchSize = 0
        pending = nil
    }

    /// Adds bytes; refuses with 413 past the limit.
    package mutating func append(_ buffer: ByteBuffer) async throws {
        size += Int64(buffer.readableBytes)
        guard size <= limit else {
            throw APIError(.contentTooLarge, "model too large", detail: "the file is over the limit of \(limit) bytes (models.maxUploadBytes)")
        }
        batch.append(buffer)
        batchSize += buffer.readableBytes
        if batchSize >= Self.batchBytes { try await flush() }
    }

    /// Starts writing the gathered batch, after waiting for the batch before it to be written.
    mutating func flush() async throws {
        let buffers = batch
        let previous = pending
        let (descriptor, threadPool) = (self.descriptor, self.threadPool)
        batch = []
        batchSize = 0
        pending = Task {
            let hashed = try await previous?.value ?? SHA256()
            return try await threadPool.runIfActive {
                var hasher = hashed
                for buffer in buffers {
                    try buffer.withUnsafeReadableBytes { bytes in
                        hasher.update(bufferPointer: bytes)
                        var offset = 0
                        while offset < bytes.count {
                            let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                            if written < 0 {
                                if errno == EINTR { continue }
                                throw APIError(.insufficientStorage, "cannot store model", detail: "write: \(String(cString: strerror(errno)))")
                            }
                            offset += written
                        }
                    }
                }
                return hasher
            }
        }
        if let previous { _ = try await previous.value }
    }

    /// Writes what is left, fsyncs, checks the file's sha256 (when one is expected), its format and that it
    /// is of the model's type, and moves it into place. The temporary file is gone afterwards, whatever
    /// happens.
    package mutating func finish(expectedSHA256: String? = nil) async throws -> ModelUpload.Placed {
        let sha256: String
        do {
            try await flush()
            sha256 = try await pending?.value.finalize().hexString ?? SHA256().finalize().hexString
        } catch {
            await abort()
            throw error
        }
        let (upload, descriptor, size) = (self.upload, self.descriptor, self.size)
        return try await threadPool.runIfActive {
            defer { close(descriptor) }
            do {
                if let expected = expectedSHA256?.lowercased(), expected != sha256 {
                    throw APIError(.badRequest, "checksum mismatch", detail: "\(upload.name) has sha256 \(sha256), not the expected \(expected)")
                }
                guard fsync(descriptor) == 0 else {
                    throw APIError(.insufficientStorage, "cannot store model", detail: "fsync: \(String(cString: strerror(errno)))")
                }
                do throws(CheckpointError) {
                    try Checkpoint.validate(path: upload.temporaryPath, as: (upload.name as NSString).pathExtension, type: upload.type)
                } catch {
                    throw APIError(.badRequest, "invalid model file", detail: error.description.replacingOccurrences(of: upload.temporaryPath, with: upload.name))
                }
                try upload.place()
            } catch {
                unlink(upload.temporaryPath)
                throw error
            }
            let modified = (try? FileManager.default.attributesOfItem(atPath: upload.finalPath))?[.modificationDate] as? Date
            return ModelUpload.Placed(sha256: sha256, size: size, modified: modified ?? Date())
        }
    }

    /// Stops writing but keeps the temporary file, to be resumed: writes what was received and closes it.
    package mutating func suspend() async {
        _ = try? await flush()
        _ = try? await pending?.value
        let descriptor = self.descriptor
        _ = try? await threadPool.runEvenIfCancelled { close(descriptor) }
    }

    /// Drops the upload: waits for a write in flight and removes the temporary file.
    package func abort() async {
        _ = try? await pending?.value
        let (upload, descriptor) = (self.upload, self.descriptor)
        _ = try? await threadPool.runEvenIfCancelled {
            close(descriptor)
            unlink(upload.temporaryPath)
        }
    }
}

extension NIOThreadPool {
    /// Runs `body` on the pool even when the calling task is cancelled (``runIfActive(_:)`` would then
    /// skip it): for the clean-up of a cancelled download or upload, which must still happen.
    func runEvenIfCancelled<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await runIfActive(eventLoop: MultiThreadedEventLoopGroup.singleton.any(), body).get()
    }
}

import Crypto
import Foundation
import Glibc
import HTTPTypes
import NIOCore
import NIOPosix
import SDBoxCore

/// One model file being received: streamed to a temporary file in the model's own folder while its sha256
/// is computed, checked, fsync'd, and only then moved into place under its name.
///
/// An upload that fails or is cut off leaves no file: the caller ends every upload with
/// ``ModelFileWriter/finish()`` or ``ModelFileWriter/abort()``.
package struct ModelUpload: Sendable {
    let type: ModelType
    package let name: String
    let folder: String
    let overwrite: Bool
    let temporaryPath: String

    static let temporaryPrefix = ".upload-"

    init(type: ModelType, name: String, folder: String, overwrite: Bool) {
        self.type = type
        self.name = name
        self.folder = folder
        self.overwrite = overwrite
        self.temporaryPath = "\(folder)/\(Self.temporaryPrefix)\(UUID().uuidString)-\(name)"
    }

    var finalPath: String { folder + "/" + name }

    /// Whether a folder entry is the temporary file of an upload a crash cut off.
    static func isLeftover(_ entry: String) -> Bool { entry.hasPrefix(temporaryPrefix) }

    /// What ``ModelFileWriter/finish()`` placed.
    package struct Placed: Sendable {
        let sha256: String
        let size: Int64
        let modified: Date
    }

    /// Opens the temporary file for a ``ModelFileWriter``.
    package func open(limit: Int64, threadPool: NIOThreadPool) async throws -> ModelFileWriter {
        let path = temporaryPath
        let descriptor = try await threadPool.runIfActive { () throws -> Int32 in
            let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw APIError(.internalServerError, "cannot store model", detail: "\(path): \(String(cString: strerror(errno)))") }
            return fd
        }
        return ModelFileWriter(upload: self, descriptor: descriptor, limit: limit, threadPool: threadPool)
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

    init(upload: ModelUpload, descriptor: Int32, limit: Int64, threadPool: NIOThreadPool) {
        self.upload = upload
        self.descriptor = descriptor
        self.limit = limit
        self.threadPool = threadPool
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

    /// Writes what is left, fsyncs, checks the file's format and moves it into place. The temporary file
    /// is gone afterwards, whatever happens.
    package mutating func finish() async throws -> ModelUpload.Placed {
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
                guard fsync(descriptor) == 0 else {
                    throw APIError(.insufficientStorage, "cannot store model", detail: "fsync: \(String(cString: strerror(errno)))")
                }
                do throws(CheckpointError) {
                    try Checkpoint.validate(path: upload.temporaryPath, as: (upload.name as NSString).pathExtension)
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

    /// Drops the upload: waits for a write in flight and removes the temporary file.
    package func abort() async {
        _ = try? await pending?.value
        let (upload, descriptor) = (self.upload, self.descriptor)
        try? await threadPool.runIfActive {
            close(descriptor)
            unlink(upload.temporaryPath)
        }
    }
}

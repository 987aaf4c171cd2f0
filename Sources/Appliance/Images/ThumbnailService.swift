import Foundation
import ImageCodec
import Logging
import NIOPosix
import ObjectStore
import SDBoxCore
import ServiceLifecycle

/// Makes a JPEG thumbnail of every output image, off the request path.
///
/// When a generation or extras task succeeds, its images are handed to ``taskEnded(_:)``, which returns at
/// once; this service makes the thumbnails one after another in the background, on the thread pool. They
/// are asked for only once the task's outcome is written, so that their reads, encoding and syncs never
/// hold up that write (or a caller waiting for it). A thumbnail asked for before it exists (or one of a
/// passthrough call's images) is made on the spot by ``thumbnail(for:)``. Thumbnails live at `thumbnails/<user>/<taskId>_<n>.jpg`.
public struct ThumbnailService: Service {
    let objects: ObjectStore
    let longestSide: Int
    let quality: Int
    let threadPool: NIOThreadPool
    let logger: Logger
    let pending: AsyncStream<String>
    let queue: AsyncStream<String>.Continuation

    public init(objects: ObjectStore, longestSide: Int, quality: Int, logger: Logger, threadPool: NIOThreadPool = .singleton) {
        self.objects = objects
        self.longestSide = longestSide
        self.quality = quality
        self.threadPool = threadPool
        self.logger = logger
        (pending, queue) = AsyncStream.makeStream(of: String.self)
    }

    /// Queues the thumbnails of a generation's or extras' images once the task succeeded; returns at once.
    public func taskEnded(_ task: TaskRecord) {
        guard task.state == .succeeded, task.kind != .passthrough else { return }
        for key in task.result?.images ?? [] { queue.yield(key) }
    }

    /// Makes the queued thumbnails until graceful shutdown.
    public func run() async throws {
        for await key in pending.cancelOnGracefulShutdown() {
            do {
                _ = try await thumbnail(for: key)
            } catch {
                logger.warning("thumbnail failed", metadata: ["image": "\(key)", "error": "\(error)"])
            }
        }
    }

    /// The key of an image's thumbnail, made now if it does not exist yet.
    public func thumbnail(for imageKey: String) async throws -> String {
        let key = ObjectKey.thumbnail(ofImage: imageKey)
        if try await objects.exists(key) { return key }
        let source = try await objects.get(imageKey)
        let (side, quality) = (longestSide, self.quality)
        let jpeg = try await threadPool.runIfActive { try Thumbnail(of: source, longestSide: side, quality: quality).jpeg }
        try await objects.put(jpeg, key: key)
        return key
    }
}

import Foundation
import ImageCodec
import Logging
import NIOPosix
import ObjectStore
import ServiceLifecycle

/// Makes a JPEG thumbnail of every output image, off the request path.
///
/// When a task's images are saved the scheduler hands their keys to ``schedule(_:)``, which returns at
/// once; this service makes the thumbnails one after another in the background, on the thread pool. A
/// thumbnail asked for before it exists (or for images saved before thumbnails existed) is made on the
/// spot by ``thumbnail(for:)``. Thumbnails live at `thumbnails/<user>/<taskId>_<n>.jpg`.
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

    /// Queues the images' thumbnails; returns at once.
    public func schedule(_ imageKeys: [String]) {
        for key in imageKeys { queue.yield(key) }
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

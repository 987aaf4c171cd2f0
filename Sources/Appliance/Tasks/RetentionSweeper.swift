import Foundation
import Logging
import ObjectStore
import SDBoxCore
import ServiceLifecycle
import Storage

/// Removes what is older than the retention age (`images.retentionDays`): finished tasks with their
/// images and thumbnails, then their records; and uploaded inputs (`inputs/`) by the time of their last
/// change. Queued and running tasks are never touched.
///
/// It sweeps once at start and then every `interval`, until graceful shutdown. `now` and `clock` are
/// injected so that tests can move time without waiting.
public struct RetentionSweeper: Service {
    let tasks: any TaskStore
    let objects: ObjectStore
    let maxAge: Duration
    let interval: Duration
    let clock: any Clock<Duration>
    let now: @Sendable () -> Date
    let logger: Logger
    /// Tasks removed per transaction.
    let batchSize = 200

    /// What one sweep removed.
    public struct Report: Sendable, Equatable {
        /// Task records removed.
        public var tasks = 0
        /// Output images removed (with their thumbnails).
        public var images = 0
        /// Uploaded inputs removed.
        public var inputs = 0

        public init(tasks: Int = 0, images: Int = 0, inputs: Int = 0) {
            self.tasks = tasks
            self.images = images
            self.inputs = inputs
        }
    }

    public init(
        tasks: any TaskStore, objects: ObjectStore, maxAge: Duration, interval: Duration, logger: Logger = Logger(label: "sdbox.retention"),
        clock: any Clock<Duration> = ContinuousClock(), now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.tasks = tasks
        self.objects = objects
        self.maxAge = maxAge
        self.interval = interval
        self.clock = clock
        self.now = now
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let report = try await sweep()
                if report != Report() {
                    logger.info("retention sweep", metadata: ["tasks": "\(report.tasks)", "images": "\(report.images)", "inputs": "\(report.inputs)"])
                }
            } catch {
                logger.error("retention sweep failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await clock.sleep(for: interval) }
        }
    }

    /// Removes everything older than the retention age, as of `now()`.
    @discardableResult
    public func sweep() async throws -> Report {
        let cutoff = now().addingTimeInterval(-Double(maxAge.components.seconds))
        var report = Report()
        while true {
            let old = try await tasks.finishedTasks(createdBefore: cutoff, limit: batchSize)
            if old.isEmpty { break }
            for task in old {
                for image in task.result?.images ?? [] {
                    try await objects.delete(image)
                    try await objects.delete(ObjectKey.thumbnail(ofImage: image))
                    report.images += 1
                }
            }
            report.tasks += try await tasks.remove(Set(old.map(\.id)), createdBefore: cutoff)
            if old.count < batchSize { break }
        }
        report.inputs += try await objects.removeFiles(under: "inputs", modifiedBefore: cutoff)
        return report
    }
}

import Foundation
import SDBoxCore
import Scheduler
import ServiceLifecycle
import Storage

/// What a live progress stream tells about a task.
package enum TaskEvent: Sendable, Equatable {
    /// Waiting for a worker: its place in its model's queue (1 = next) and the estimated seconds to done.
    case queued(position: Int, eta: Double?)
    /// Handed to a worker (attempt 1, or more after a worker was lost).
    case started(attempt: Int)
    /// The worker's progress: sampling step `step` of `steps` of image batch `job` (from 0) of `jobs`.
    case progress(step: Int, steps: Int, job: Int, jobs: Int, fraction: Double, eta: Double)
    /// The worker's preview of the image in the making (A1111's `current_image`, base64).
    case preview(String)
    /// Nothing changed for a while (streams send it to keep idle connections open).
    case heartbeat
    /// The task is final: the last event of a stream.
    case final(TaskRecord)
}

/// Where a task stands at one look: its record, its queue position, or its worker's progress report.
struct TaskSnapshot: Sendable, Equatable {
    var record: TaskRecord
    var position: Int?
    var eta: Double?
    var progress: A1111.Progress?

    /// The events that tell a subscriber who saw `old` (nil: nothing yet) that the task is now `self`.
    func events(since old: TaskSnapshot?) -> [TaskEvent] {
        switch record.state {
        case .succeeded, .failed, .cancelled:
            return [.final(record)]
        case .queued:
            guard let position, old?.record.state != .queued || old?.position != position else { return [] }
            return [.queued(position: position, eta: eta)]
        case .running:
            var events: [TaskEvent] = []
            if old?.record.state != .running || old?.record.attempts != record.attempts {
                events.append(.started(attempt: record.attempts))
            }
            if let progress, progress.state.sampling_steps > 0,
                old?.progress?.state.sampling_step != progress.state.sampling_step || old?.progress?.state.job_no != progress.state.job_no
            {
                events.append(.progress(
                    step: progress.state.sampling_step, steps: progress.state.sampling_steps, job: progress.state.job_no,
                    jobs: progress.state.job_count, fraction: progress.progress, eta: progress.eta_relative
                ))
            }
            if let image = progress?.current_image, !image.isEmpty, image != old?.progress?.current_image {
                events.append(.preview(image))
            }
            return events
        }
    }
}

/// Live progress for event streams (`GET /tasks/{id}/events`, `/ws`): while anyone listens, one loop
/// looks at each watched task every interval (its record, its queue position, its worker's progress,
/// once per task however many listen, all tasks at once) and gives each subscriber the events since its
/// last look. Streams end with the task's final event, when the task is gone, or at shutdown.
package actor TaskEventHub: Service {
    struct Subscriber {
        let taskID: String
        let continuation: AsyncStream<TaskEvent>.Continuation
        var last: TaskSnapshot?
        var lastSent: ContinuousClock.Instant
    }

    let tasks: any TaskStore
    let scheduler: Scheduler
    let interval: Duration
    /// How long a stream may stay silent before a heartbeat.
    let heartbeat: Duration = .seconds(15)
    var subscribers: [Int: Subscriber] = [:]
    var nextID = 0
    var looking = false
    var closed = false
    /// In a fleet, the watched tasks' records as last read: read again only when the fleet announces a
    /// change (``taskChanged(_:)``), not at every look, so that open streams do not poll the database.
    let readsOnChange: Bool
    var records: [String: TaskRecord] = [:]
    /// Counts ``taskChanged(_:)`` calls, so that a look that raced a change does not keep what it read.
    var changes = 0

    /// With `readsOnChange` (a fleet), a watched task's record is read when it is first watched and after
    /// each ``taskChanged(_:)``; else at every look (LMDB's reads cost no disk).
    package init(tasks: any TaskStore, scheduler: Scheduler, interval: Duration, readsOnChange: Bool = false) {
        self.tasks = tasks
        self.scheduler = scheduler
        self.interval = interval
        self.readsOnChange = readsOnChange
    }

    /// Task `id`'s record changed (or, with nil, any record may have): the next look reads it again.
    package func taskChanged(_ id: String?) {
        changes += 1
        if let id { records[id] = nil } else { records = [:] }
    }

    /// The events of a task, from where it stands now to its final event.
    package func subscribe(_ taskID: String) -> AsyncStream<TaskEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: TaskEvent.self, bufferingPolicy: .bufferingNewest(256))
        guard !closed else {
            continuation.finish()
            return stream
        }
        let id = nextID
        nextID += 1
        subscribers[id] = Subscriber(taskID: taskID, continuation: continuation, last: nil, lastSent: .now)
        continuation.onTermination = { _ in Task { await self.unsubscribe(id) } }
        if !looking {
            looking = true
            Task { await self.look() }
        }
        return stream
    }

    func unsubscribe(_ id: Int) {
        subscribers[id] = nil
    }

    /// Looks at the watched tasks every interval while anyone listens.
    func look() async {
        while !subscribers.isEmpty {
            let ids = Set(subscribers.values.map(\.taskID))
            records = records.filter { ids.contains($0.key) }
            let known = readsOnChange ? records : [:]
            let changesBefore = changes
            let snapshots = await withTaskGroup(of: (String, TaskSnapshot?).self, returning: [String: TaskSnapshot?].self) { group in
                for id in ids { group.addTask { (id, await self.snapshot(of: id, record: known[id])) } }
                var found: [String: TaskSnapshot?] = [:]
                for await (id, snapshot) in group { found[id] = snapshot }
                return found
            }
            let now = ContinuousClock.now
            if readsOnChange && changes == changesBefore {
                for (id, snapshot) in snapshots where known[id] == nil { records[id] = snapshot?.record }
            }
            for (key, subscriber) in subscribers {
                // Subscribed since the look: next time.
                guard let looked = snapshots[subscriber.taskID] else { continue }
                guard let snapshot = looked else {
                    // The task is gone.
                    subscriber.continuation.finish()
                    subscribers[key] = nil
                    continue
                }
                var events = snapshot.events(since: subscriber.last)
                if events.isEmpty && subscriber.lastSent.duration(to: now) >= heartbeat { events = [.heartbeat] }
                for event in events { subscriber.continuation.yield(event) }
                subscribers[key]?.last = snapshot
                if !events.isEmpty { subscribers[key]?.lastSent = now }
                if snapshot.record.state.isFinal {
                    subscriber.continuation.finish()
                    subscribers[key] = nil
                }
            }
            try? await Task.sleep(for: interval)
        }
        looking = false
    }

    /// Where task `id` stands: its `record` (read now when nil) and its queue place or progress.
    nonisolated func snapshot(of id: String, record known: TaskRecord? = nil) async -> TaskSnapshot? {
        let read = known == nil ? try? await tasks.get(id) : nil
        guard let record = known ?? read else { return nil }
        var snapshot = TaskSnapshot(record: record)
        guard !record.state.isFinal else { return snapshot }
        switch await scheduler.progress(of: id) {
        case .queued(let position, let eta):
            snapshot.position = position
            snapshot.eta = eta
        case .running(let report):
            snapshot.progress = report
        case .notActive:
            break
        }
        return snapshot
    }

    // MARK: Service

    /// Ends every stream at graceful shutdown, so that open streams do not hold the server up.
    package func run() async throws {
        try? await gracefulShutdown()
        closed = true
        for subscriber in subscribers.values { subscriber.continuation.finish() }
        subscribers = [:]
    }
}

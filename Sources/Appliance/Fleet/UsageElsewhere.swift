import Scheduler
import Storage
import Synchronization

/// What each user's unfinished tasks that the other boxes of a fleet accepted take, for the per-user queue
/// limits, read from the database at most once per `maxAge` for a user: every submission asks, and a user
/// with a deep queue would otherwise cost a scan of that queue (up to the limit) at each one. A box thus
/// sees the others' submissions of the last moment late, as it does those being made at the same moment.
final class UsageElsewhere: Sendable {
    let usage: PostgresUnfinishedUsage
    let maxAge: Duration
    private let readings = Mutex<[String: (usage: ActiveUsage, at: ContinuousClock.Instant)]>([:])

    init(_ usage: PostgresUnfinishedUsage, maxAge: Duration = .seconds(1)) {
        self.usage = usage
        self.maxAge = maxAge
    }

    /// What `user`'s unfinished tasks accepted elsewhere take, counted up to `maxTasks`.
    func of(_ user: String, upTo maxTasks: Int) async throws -> ActiveUsage {
        let now = ContinuousClock.now
        if let reading = readings.withLock({ $0[user] }), reading.at.duration(to: now) < maxAge { return reading.usage }
        let (tasks, bytes) = try await usage.elsewhere(of: user, upTo: maxTasks)
        let read = ActiveUsage(tasks: tasks, bytes: bytes)
        readings.withLock { readings in
            // Readings too old to use go when there are many, so that the table stays as small as the
            // users of the last moment.
            if readings.count >= 1024 { readings = readings.filter { $0.value.at.duration(to: now) < maxAge } }
            readings[user] = (read, now)
        }
        return read
    }
}

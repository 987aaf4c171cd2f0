import SDBoxCore
import Synchronization

/// The latest progress report of each running task, behind a lock rather than in the scheduler actor, so
/// that polls read it without queueing on the actor or waiting for the worker. A report older than
/// `freshness` is still answered, while one poller (and one only) has the worker asked again.
final class ProgressBoard: Sendable {
    /// How long a report is current before the worker is asked again.
    let freshness: Duration
    private let entries = Mutex<[String: Entry]>([:])

    private struct Entry {
        var report: A1111.Progress?
        var at: ContinuousClock.Instant
        var refreshing = false
    }

    init(freshness: Duration) {
        self.freshness = freshness
    }

    /// The last report of task `id`, if there is one; `refresh` is true for the one caller that should
    /// have the worker asked again because the report is stale.
    func latest(of id: String, now: ContinuousClock.Instant = .now) -> (report: A1111.Progress?, refresh: Bool)? {
        entries.withLock { entries in
            guard var entry = entries[id] else { return nil }
            let refresh = !entry.refreshing && entry.at.duration(to: now) >= freshness
            if refresh {
                entry.refreshing = true
                entries[id] = entry
            }
            return (entry.report, refresh)
        }
    }

    func post(_ report: A1111.Progress?, of id: String, at now: ContinuousClock.Instant = .now) {
        entries.withLock { $0[id] = Entry(report: report, at: now) }
    }

    func remove(_ id: String) {
        _ = entries.withLock { $0.removeValue(forKey: id) }
    }
}

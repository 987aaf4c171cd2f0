import Foundation
import SDBoxCore
import Synchronization

/// Final task records this box read or wrote lately, so that polls of a finished task (`/tasks/{id}/result`,
/// `/progress`, often many a second) need no query. A final record changes only in its webhook's state or by
/// its removal, which another box may do: an entry is used for ``freshness`` after it was read or written
/// here, then read again. Bounded by count; the entries cached first go first.
final class FinalTaskCache: Sendable {
    /// How long an entry is used without reading the database again.
    let freshness: Duration
    let maxCount: Int
    private let state = Mutex(State())

    private struct State {
        var entries: [String: (task: TaskRecord, at: ContinuousClock.Instant)] = [:]
        var order: [String] = []
        var head = 0
    }

    init(freshness: Duration = .seconds(5), maxCount: Int = 4096) {
        self.freshness = freshness
        self.maxCount = maxCount
    }

    /// Task `id`'s final record, when one was kept within ``freshness``.
    func task(_ id: String, now: ContinuousClock.Instant = .now) -> TaskRecord? {
        state.withLock { state in
            guard let entry = state.entries[id], entry.at.duration(to: now) < freshness else { return nil }
            return entry.task
        }
    }

    /// Keeps `task` if it is final (and forgets an older entry of it otherwise).
    func keep(_ task: TaskRecord, now: ContinuousClock.Instant = .now) {
        state.withLock { state in
            guard task.state.isFinal else {
                state.entries[task.id] = nil
                return
            }
            if state.entries.updateValue((task, now), forKey: task.id) == nil { state.order.append(task.id) }
            while state.entries.count > maxCount, state.head < state.order.count {
                state.entries[state.order[state.head]] = nil
                state.head += 1
            }
            if state.head > maxCount {
                state.order.removeFirst(state.head)
                state.head = 0
            }
        }
    }

    /// Forgets tasks that were removed.
    func forget(_ ids: some Sequence<String>) {
        state.withLock { state in
            for id in ids { state.entries[id] = nil }
        }
    }
}

import SDBoxCore
import Synchronization

/// What every submission asks of the catalogue, kept in memory: which pools have a record, and each
/// user's options. This process makes every change to them (``LMDBCatalogStore`` keeps the cache true
/// as it writes), so a submission reads neither from a transaction.
final class CatalogCache: Sendable {
    private struct State {
        var pools: Set<String> = []
        /// Counts pool removals, so that a check that raced one is not kept.
        var poolRemovals = 0
        var options: [String: [String: JSONValue]] = [:]
        /// Counts option writes, so that a read that raced one is not kept.
        var optionWrites = 0
    }

    private let state = Mutex(State())

    /// Whether a pool is known to have a record, and the count of removals to pass to ``poolExists(_:removals:)``.
    func pool(_ model: String) -> (known: Bool, removals: Int) {
        state.withLock { ($0.pools.contains(model), $0.poolRemovals) }
    }

    /// Notes a pool record written or found, unless a pool was removed since `removals` was read.
    func poolExists(_ model: String, removals: Int? = nil) {
        state.withLock { state in
            if removals == nil || removals == state.poolRemovals { state.pools.insert(model) }
        }
    }

    /// Call before removing a pool record.
    func poolRemoved(_ model: String) {
        state.withLock { state in
            state.poolRemovals += 1
            state.pools.remove(model)
        }
    }

    /// A user's options, if known, and the count of option writes to pass to ``optionsRead(_:of:writes:)``.
    func options(of user: String) -> (known: [String: JSONValue]?, writes: Int) {
        state.withLock { ($0.options[user], $0.optionWrites) }
    }

    /// Keeps options read from the database, unless they were written since the read began.
    func optionsRead(_ options: [String: JSONValue], of user: String, writes: Int) {
        state.withLock { state in
            if state.optionWrites == writes { state.options[user] = options }
        }
    }

    func optionsWritten(_ options: [String: JSONValue], of user: String) {
        state.withLock { state in
            state.optionWrites += 1
            state.options[user] = options
        }
    }

    /// Call before writing a user's options: reads under way are not kept.
    func optionsChanging() {
        state.withLock { $0.optionWrites += 1 }
    }
}

import Foundation
import SDBoxCore
import Synchronization

/// Decoded task records kept in memory, so that polling a task (`/tasks/{id}/progress`, `/result`) needs
/// no transaction, no hop to the thread pool and no JSON decoding.
///
/// It never holds a record older than the database's: every write is numbered while it holds LMDB's
/// writer lock, and a record replaces a cached one only when its write came later; a read that missed
/// fills in only when no write ran while it read. A write that LMDB failed empties the cache, to be safe
/// (LMDB aborts a transaction it cannot commit). Bounded by count and by the records' encoded size; the
/// records cached first are dropped first (tasks are polled while they are young).
final class TaskCache: Sendable {
    /// What the cache knows of one task.
    enum Cached: Sendable {
        case task(TaskRecord)
        /// The task was removed.
        case removed
        /// The record is too big to keep; read it from the database.
        case tooBig
    }

    /// What one write transaction committed, numbered in commit order.
    struct Changes: Sendable {
        let version: UInt64
        var records: [(id: String, value: Cached, cost: Int)] = []

        /// Records a task as written, decoded from the bytes stored (dates at the store's millisecond
        /// precision), and returns it.
        mutating func stored(_ encoded: Data) throws -> TaskRecord {
            let task = try RecordCoding.decode(TaskRecord.self, from: [UInt8](encoded))
            records.append((task.id, .task(task), encoded.count))
            return task
        }

        mutating func removed(_ id: String) {
            records.append((id, .removed, 0))
        }
    }

    private struct Entry {
        var value: Cached
        var cost: Int
        var version: UInt64
    }

    private struct State {
        var entries: [String: Entry] = [:]
        /// Cached ids, oldest first from `head` (a queue kept in an array).
        var order: [String] = []
        var head = 0
        var cost = 0
        /// The newest version of a dropped entry: a write no newer than it may be older than what was dropped.
        var droppedVersion: UInt64 = 0
        var writesInFlight = 0
        var writesBegun: UInt64 = 0
        var lastVersion: UInt64 = 0

        mutating func store(_ id: String, _ entry: Entry, maxCount: Int, maxCost: Int) {
            if let old = entries[id] {
                guard entry.version > old.version else { return }
                cost -= old.cost
            } else {
                guard entry.version == 0 || entry.version > droppedVersion else { return }
                order.append(id)
            }
            entries[id] = entry
            cost += entry.cost
            while entries.count > maxCount || cost > maxCost, head < order.count {
                if let dropped = entries.removeValue(forKey: order[head]) {
                    cost -= dropped.cost
                    droppedVersion = max(droppedVersion, dropped.version)
                }
                head += 1
            }
            if head > 1024 && head * 2 > order.count {
                order.removeFirst(head)
                head = 0
            }
        }
    }

    let maxCount: Int
    let maxCost: Int
    private let state = Mutex(State())

    /// - Parameters:
    ///   - maxCount: The most records kept.
    ///   - maxCost: The most encoded bytes kept; a record over a sixteenth of it is not kept.
    init(maxCount: Int = 10_000, maxCost: Int = 64 << 20) {
        self.maxCount = maxCount
        self.maxCost = maxCost
    }

    /// What the cache knows of `id`; nil when it knows nothing.
    func lookup(_ id: String) -> Cached? {
        state.withLock { $0.entries[id]?.value }
    }

    /// Call before a read that may ``fill(_:cost:ticket:)``; nil when a write is under way.
    func readTicket() -> UInt64? {
        state.withLock { $0.writesInFlight == 0 ? $0.writesBegun : nil }
    }

    /// Caches a record read from the database, unless a write began since `ticket` or the cache knows the task.
    func fill(_ task: TaskRecord, cost: Int, ticket: UInt64) {
        state.withLock { state in
            guard state.writesInFlight == 0, state.writesBegun == ticket, state.entries[task.id] == nil else { return }
            state.store(task.id, entry(.task(task), cost: cost, version: 0), maxCount: maxCount, maxCost: maxCost)
        }
    }

    /// Call before a write transaction starts; then ``version()`` inside it and ``endWrite(_:)`` after it.
    func beginWrite() {
        state.withLock { state in
            state.writesInFlight += 1
            state.writesBegun += 1
        }
    }

    /// The number of the write under way; call it inside the write transaction, under LMDB's writer lock.
    func version() -> UInt64 {
        state.withLock { state in
            state.lastVersion += 1
            return state.lastVersion
        }
    }

    /// Records what a write committed, or, given nil (LMDB failed it), forgets everything.
    func endWrite(_ changes: Changes?) {
        state.withLock { state in
            state.writesInFlight -= 1
            guard let changes else {
                state = State(
                    droppedVersion: state.lastVersion, writesInFlight: state.writesInFlight, writesBegun: state.writesBegun,
                    lastVersion: state.lastVersion
                )
                return
            }
            for record in changes.records {
                state.store(record.id, entry(record.value, cost: record.cost, version: changes.version), maxCount: maxCount, maxCost: maxCost)
            }
        }
    }

    private func entry(_ value: Cached, cost: Int, version: UInt64) -> Entry {
        cost > maxCost / 16 ? Entry(value: .tooBig, cost: 0, version: version) : Entry(value: value, cost: cost, version: version)
    }
}

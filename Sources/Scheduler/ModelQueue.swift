import DequeModule
import Foundation

/// One model's queued work, in the order it runs: fair between users, by priority within each user's own.
///
/// - **Between users, round robin**: each turn goes to the next user in a ring of the users with queued
///   work; a user who just had a turn goes to the back, and one who arrives joins at the back. So however
///   many tasks one user queues, or with whatever priority, another user's next task waits for at most
///   one task of each other user.
/// - **Within a user's own tasks, by priority**: each level counts as `priorityStep` seconds of waiting,
///   so a higher priority runs sooner and a lower one is delayed, never starved.
/// - **Across users, priority is for admins**: a task an admin queued with a positive priority
///   (``Entry/crossUserPriority``) goes before the ring, highest first.
struct ModelQueue: Sendable {
    struct Entry: Sendable, Equatable {
        let id: String
        /// Whose turn this task takes (leases of plain passthrough calls carry their caller too).
        let user: String
        let enqueuedAt: Date
        /// Orders the user's own tasks: enqueue time less the priority bonus.
        let rank: TimeInterval
        /// An admin's priority, which orders the task against every user's; 0 for everyone else.
        let crossUserPriority: Int
        let sequence: UInt64
    }

    /// Tasks ahead of the ring (admins' positive cross-user priority), in order; few.
    private var express: [Entry] = []
    /// Each user's tasks, in their own order (by rank, then sequence).
    private var byUser: [String: Deque<Entry>] = [:]
    /// Users with queued tasks, whose turn is next first.
    private var ring: Deque<String> = []
    /// Every queued task by id, to find, place and remove one without a scan.
    private var entries: [String: Entry] = [:]

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    /// The task that runs next.
    var first: Entry? {
        express.first ?? ring.first.flatMap { byUser[$0]?.first }
    }

    /// Every queued task in the order it would run if nothing else came (O(n): for listings, not per poll).
    func order() -> [Entry] {
        var order = express
        order.reserveCapacity(count)
        var round = 0
        var more = true
        while more {
            more = false
            for user in ring {
                guard let queue = byUser[user], round < queue.count else { continue }
                order.append(queue[round])
                more = more || round + 1 < queue.count
            }
            round += 1
        }
        return order
    }

    /// Where a task stands in ``order()`` (0 = next), without making the order: the express tasks, then
    /// for a task `k`-th in its user's queue, `min(k, their count)` tasks of each user in the ring and one
    /// more of each user ahead in the ring with more than `k` tasks. O(users + log n).
    func index(of id: String) -> Int? {
        guard let entry = entries[id] else { return nil }
        if entry.crossUserPriority > 0 { return express.firstIndex { $0.id == id } }
        guard let queue = byUser[entry.user] else { return nil }
        let k = Self.insertionIndex(of: entry, in: queue) - 1
        var index = express.count
        var ahead = true
        for user in ring {
            let theirs = byUser[user]?.count ?? 0
            if user == entry.user { ahead = false }
            index += min(k, theirs) + (ahead && theirs > k ? 1 : 0)
        }
        return index
    }

    mutating func insert(_ entry: Entry) {
        entries[entry.id] = entry
        if entry.crossUserPriority > 0 {
            let key = (-entry.crossUserPriority, entry.rank, entry.sequence)
            express.insert(entry, at: express.firstIndex { (-$0.crossUserPriority, $0.rank, $0.sequence) > key } ?? express.endIndex)
            return
        }
        if byUser[entry.user] == nil { ring.append(entry.user) }
        // Usually the last place (tasks come in time order): the search is quick and the insert an append.
        let index = Self.insertionIndex(of: entry, in: byUser[entry.user] ?? [])
        byUser[entry.user, default: []].insert(entry, at: index)
    }

    /// The index in a user's queue after every task that runs before `entry` or is it (binary search).
    private static func insertionIndex(of entry: Entry, in queue: Deque<Entry>) -> Int {
        let key = (entry.rank, entry.sequence)
        var low = 0
        var high = queue.count
        while low < high {
            let middle = (low + high) / 2
            if (queue[middle].rank, queue[middle].sequence) <= key { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Takes the next task out; its user goes to the back of the ring.
    mutating func removeFirst() -> Entry? {
        if !express.isEmpty {
            let next = express.removeFirst()
            entries[next.id] = nil
            return next
        }
        guard let user = ring.popFirst() else { return nil }
        guard let next = byUser[user]?.popFirst() else { return nil }
        entries[next.id] = nil
        if byUser[user]?.isEmpty == true {
            byUser[user] = nil
        } else {
            ring.append(user)
        }
        return next
    }

    /// Takes a task out wherever it is; false if it is not queued here.
    mutating func remove(_ id: String) -> Bool {
        guard let entry = entries.removeValue(forKey: id) else { return false }
        if entry.crossUserPriority > 0 {
            express.removeAll { $0.id == id }
            return true
        }
        guard var queue = byUser.removeValue(forKey: entry.user) else { return true }
        queue.remove(at: Self.insertionIndex(of: entry, in: queue) - 1)
        if queue.isEmpty {
            ring.removeAll { $0 == entry.user }
        } else {
            byUser[entry.user] = queue
        }
        return true
    }

    /// Whether a task is queued here.
    func contains(_ id: String) -> Bool { entries[id] != nil }
}

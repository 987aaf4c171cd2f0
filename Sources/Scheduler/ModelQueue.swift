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

    /// Tasks ahead of the ring (admins' positive cross-user priority), in order.
    private var express: [Entry] = []
    /// Each user's tasks, in their own order.
    private var byUser: [String: [Entry]] = [:]
    /// Users with queued tasks, whose turn is next first.
    private var ring: [String] = []
    /// The whole order, made when first asked for after a change.
    private var cachedOrder: [Entry]?

    var count: Int { express.count + byUser.values.reduce(0) { $0 + $1.count } }
    var isEmpty: Bool { express.isEmpty && ring.isEmpty }

    /// The task that runs next.
    var first: Entry? {
        express.first ?? ring.first.flatMap { byUser[$0]?.first }
    }

    /// Every queued task in the order it would run if nothing else came.
    mutating func order() -> [Entry] {
        if let cachedOrder { return cachedOrder }
        var order = express
        var round = 0
        var more = true
        while more {
            more = false
            for user in ring {
                guard let entries = byUser[user], round < entries.count else { continue }
                order.append(entries[round])
                more = more || round + 1 < entries.count
            }
            round += 1
        }
        cachedOrder = order
        return order
    }

    mutating func insert(_ entry: Entry) {
        cachedOrder = nil
        if entry.crossUserPriority > 0 {
            let key = (-entry.crossUserPriority, entry.rank, entry.sequence)
            express.insert(entry, at: express.firstIndex { (-$0.crossUserPriority, $0.rank, $0.sequence) > key } ?? express.endIndex)
            return
        }
        if byUser[entry.user] == nil { ring.append(entry.user) }
        let key = (entry.rank, entry.sequence)
        let index = byUser[entry.user]?.firstIndex { ($0.rank, $0.sequence) > key } ?? byUser[entry.user]?.endIndex ?? 0
        byUser[entry.user, default: []].insert(entry, at: index)
    }

    /// Takes the next task out; its user goes to the back of the ring.
    mutating func removeFirst() -> Entry? {
        cachedOrder = nil
        if !express.isEmpty { return express.removeFirst() }
        guard !ring.isEmpty else { return nil }
        let user = ring.removeFirst()
        guard var entries = byUser[user], !entries.isEmpty else { return nil }
        let next = entries.removeFirst()
        if entries.isEmpty {
            byUser[user] = nil
        } else {
            byUser[user] = entries
            ring.append(user)
        }
        return next
    }

    /// Takes a task out wherever it is; false if it is not queued here.
    mutating func remove(_ id: String) -> Bool {
        if let index = express.firstIndex(where: { $0.id == id }) {
            cachedOrder = nil
            express.remove(at: index)
            return true
        }
        for (user, var entries) in byUser {
            guard let index = entries.firstIndex(where: { $0.id == id }) else { continue }
            cachedOrder = nil
            entries.remove(at: index)
            if entries.isEmpty {
                byUser[user] = nil
                ring.removeAll { $0 == user }
            } else {
                byUser[user] = entries
            }
            return true
        }
        return false
    }

    /// Whether a task is queued here (without making the order).
    func contains(_ id: String) -> Bool {
        express.contains { $0.id == id } || byUser.values.contains { $0.contains { $0.id == id } }
    }
}

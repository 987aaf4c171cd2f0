import Synchronization

/// A user's unfinished (queued or running) tasks, and the bytes their requests take in storage.
public struct ActiveUsage: Sendable, Equatable {
    public var tasks = 0
    public var bytes = 0

    public init() {}
}

/// What each user's unfinished tasks take, for the per-user limits: checked and counted in one step, so
/// concurrent submissions cannot all pass a check that only one of them should.
///
/// Tasks are counted by id, so that taking one back twice, or one this box never counted (in a fleet, a
/// task submitted to another box and run here), changes nothing.
public final class UsageLedger: Sendable {
    private struct Counted {
        let user: String
        let bytes: Int
    }

    private struct State {
        var users: [String: ActiveUsage] = [:]
        var tasks: [String: Counted] = [:]

        mutating func count(_ id: String, user: String, bytes: Int) {
            tasks[id] = Counted(user: user, bytes: bytes)
            let usage = users[user] ?? ActiveUsage()
            users[user] = ActiveUsage(tasks: usage.tasks + 1, bytes: usage.bytes + bytes)
        }
    }

    private let state = Mutex(State())

    public init() {}

    /// How a task's admission went.
    public enum Admission: Sendable, Equatable {
        /// Counted: the task is then stored, or ``UsageLedger/withdraw(task:)``n.
        case admitted
        /// A task of this id is counted already (the same client-chosen id sent twice): nothing changed.
        case alreadyCounted
        /// Refused: the user's usage, which one more task would take past a limit.
        case refused(ActiveUsage)
    }

    /// Counts task `id` of `user`, whose request takes `bytes`, unless the user already has `maxTasks`
    /// unfinished tasks or this one would take the user past `maxBytes`, with what the user has `elsewhere`
    /// (in a fleet, the tasks the other boxes accepted).
    public func admit(task id: String, user: String, bytes: Int, maxTasks: Int, maxBytes: Int, elsewhere: ActiveUsage = ActiveUsage()) -> Admission {
        state.withLock { state in
            if state.tasks[id] != nil { return .alreadyCounted }
            let here = state.users[user] ?? ActiveUsage()
            let usage = ActiveUsage(tasks: here.tasks + elsewhere.tasks, bytes: here.bytes + elsewhere.bytes)
            guard usage.tasks < maxTasks, usage.bytes + bytes <= maxBytes else { return .refused(usage) }
            state.count(id, user: user, bytes: bytes)
            return .admitted
        }
    }

    /// Counts a task without a limit (one a previous run left unfinished).
    public func add(task id: String, user: String, bytes: Int) {
        state.withLock { state in
            if state.tasks[id] == nil { state.count(id, user: user, bytes: bytes) }
        }
    }

    /// The ids of the tasks counted.
    public func countedTaskIDs() -> [String] {
        state.withLock { Array($0.tasks.keys) }
    }

    /// Takes back a task that ended, or that was admitted but not stored; nothing for a task not counted.
    public func withdraw(task id: String) {
        state.withLock { state in
            guard let counted = state.tasks.removeValue(forKey: id), let usage = state.users[counted.user] else { return }
            state.users[counted.user] = usage.tasks <= 1 ? nil : ActiveUsage(tasks: usage.tasks - 1, bytes: usage.bytes - counted.bytes)
        }
    }
}

extension ActiveUsage {
    public init(tasks: Int, bytes: Int) {
        self.tasks = tasks
        self.bytes = bytes
    }
}

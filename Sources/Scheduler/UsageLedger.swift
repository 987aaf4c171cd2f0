import Synchronization

/// A user's unfinished (queued or running) tasks, and the bytes their requests take in storage.
public struct ActiveUsage: Sendable, Equatable {
    public var tasks = 0
    public var bytes = 0

    public init() {}
}

/// What each user's unfinished tasks take, for the per-user limits: checked and counted in one step, so
/// concurrent submissions cannot all pass a check that only one of them should.
public final class UsageLedger: Sendable {
    private let entries = Mutex<[String: ActiveUsage]>([:])

    public init() {}

    /// Counts a task of `user` whose request takes `bytes`, unless the user already has `maxTasks`
    /// unfinished tasks or this one would take the user past `maxBytes`: then nothing is counted and the
    /// usage is returned. A task admitted is then stored, or ``withdraw(user:bytes:)``n.
    public func admit(user: String, bytes: Int, maxTasks: Int, maxBytes: Int) -> ActiveUsage? {
        entries.withLock { entries in
            let usage = entries[user] ?? ActiveUsage()
            guard usage.tasks < maxTasks, usage.bytes + bytes <= maxBytes else { return usage }
            entries[user] = ActiveUsage(tasks: usage.tasks + 1, bytes: usage.bytes + bytes)
            return nil
        }
    }

    /// Counts a task without a limit (one a previous run left unfinished).
    func add(user: String, bytes: Int) {
        entries.withLock { entries in
            let usage = entries[user] ?? ActiveUsage()
            entries[user] = ActiveUsage(tasks: usage.tasks + 1, bytes: usage.bytes + bytes)
        }
    }

    /// Takes back a task that ended, or that was admitted but not stored.
    public func withdraw(user: String, bytes: Int) {
        entries.withLock { entries in
            guard let usage = entries[user] else { return }
            entries[user] = usage.tasks <= 1 ? nil : ActiveUsage(tasks: usage.tasks - 1, bytes: usage.bytes - bytes)
        }
    }
}

extension ActiveUsage {
    init(tasks: Int, bytes: Int) {
        self.tasks = tasks
        self.bytes = bytes
    }
}

import NIOPosix
import Synchronization

/// LMDB write transactions committed in groups: writes that arrive while one commits wait, then all of
/// them commit together in one transaction, with one sync to disk ("group commit"). Each write runs in a
/// transaction nested in the group's, so one that throws undoes its own changes and no other's; each
/// caller is answered only once the group is on disk. One write alone costs what it did before; many at
/// once share a sync instead of queueing for LMDB's writer lock one sync each.
final class GroupCommit: Sendable {
    /// One caller's write: runs it (false when it threw, its outcome kept for ``finish``) and then
    /// answers the caller, with the group's error when the group could not commit.
    struct Write: Sendable {
        let run: @Sendable (LMDBTransaction) -> Bool
        let finish: @Sendable ((any Error)?) -> Void
    }

    /// The outcome of one write, kept between its run and its caller's answer.
    final class Outcome<R: Sendable>: Sendable {
        let result = Mutex<Result<R, any Error>?>(nil)
    }

    private struct State {
        var waiting: [Write] = []
        var committing = false
    }

    let environment: LMDBEnvironment
    let threadPool: NIOThreadPool
    private let state = Mutex(State())

    init(environment: LMDBEnvironment, threadPool: NIOThreadPool) {
        self.environment = environment
        self.threadPool = threadPool
    }

    /// Runs `body` in the next group and returns what it returned once the group is on disk.
    func write<R: Sendable>(_ body: @escaping @Sendable (LMDBTransaction) throws -> R) async throws -> R {
        let outcome = Outcome<R>()
        return try await withCheckedThrowingContinuation { continuation in
            enqueue(Write(
                run: { txn in
                    let result = Result { try body(txn) }
                    outcome.result.withLock { $0 = result }
                    if case .failure = result { return false }
                    return true
                },
                finish: { groupError in
                    if let groupError {
                        continuation.resume(throwing: groupError)
                    } else {
                        continuation.resume(with: outcome.result.withLock { $0 } ?? .failure(CancellationError()))
                    }
                }
            ))
        }
    }

    private func enqueue(_ write: Write) {
        let start = state.withLock { state in
            state.waiting.append(write)
            if state.committing { return false }
            state.committing = true
            return true
        }
        guard start else { return }
        threadPool.submit { poolState in
            guard poolState == .active else {
                self.failAll(CancellationError())
                return
            }
            self.commitGroups()
        }
    }

    /// Commits the waiting writes, group after group, until none waits.
    private func commitGroups() {
        while true {
            let group = state.withLock { state in
                let group = state.waiting
                state.waiting.removeAll(keepingCapacity: true)
                if group.isEmpty { state.committing = false }
                return group
            }
            if group.isEmpty { return }
            var groupError: (any Error)?
            do {
                try environment.write { txn in
                    if group.count == 1 {
                        // Alone: no nesting; a write that threw aborts the transaction (nothing else is in it).
                        if !group[0].run(txn) { throw Undone() }
                    } else {
                        for write in group { try txn.nested(write.run) }
                    }
                }
            } catch is Undone {
                groupError = nil
            } catch {
                groupError = error
            }
            for write in group { write.finish(groupError) }
        }
    }

    private func failAll(_ error: any Error) {
        let group = state.withLock { state in
            let group = state.waiting
            state.waiting.removeAll()
            state.committing = false
            return group
        }
        for write in group { write.finish(error) }
    }

    /// The lone write of a group threw: its transaction is aborted and its own error goes to its caller.
    private struct Undone: Error {}
}

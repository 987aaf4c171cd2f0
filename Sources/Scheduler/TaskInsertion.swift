import Foundation
import SDBoxCore
import Synchronization

/// The first write of a task that is queued while it is written (``TaskRunner/beginWriting(_:)``).
///
/// A task granted a worker before its write starts is written once, already running: the grant marks the
/// record to write (``markRunning(at:)``), and the run does not write a mark of its own. A task granted
/// later is written as queued, and its run marks it running once this write is on disk. Either way every
/// change of the task waits for this write (``written``), whose end the writer reports to
/// ``TaskRunner/written(_:_:)``.
public final class TaskInsertion: Sendable {
    /// The task as it was queued: what its run sends to the worker.
    let queued: TaskRecord

    private struct State {
        var toWrite: TaskRecord
        var sealed = false
        var carriesMark = false
        var outcome: Result<TaskRecord, any Error>?
        var waiters: [CheckedContinuation<Result<TaskRecord, any Error>, Never>] = []
    }

    private let state: Mutex<State>

    init(_ task: TaskRecord) {
        queued = task
        state = Mutex(State(toWrite: task))
    }

    /// Marks the record to write running, as its run's mark would (one more attempt, started now), unless
    /// its write has started (then the run writes the mark once this write is on disk).
    func markRunning(at date: Date) {
        state.withLock { state in
            guard !state.sealed else { return }
            state.toWrite.state = .running
            state.toWrite.attempts += 1
            state.toWrite.startedAt = date
            state.carriesMark = true
        }
    }

    /// The record to write, fixed from now on.
    public func seal() -> TaskRecord {
        state.withLock { state in
            state.sealed = true
            return state.toWrite
        }
    }

    /// Whether the write carries the task's running mark (``markRunning(at:)`` came before ``seal()``).
    var carriesMark: Bool { state.withLock { $0.carriesMark } }

    /// Records how the write ended, and wakes whoever waits for it.
    func finish(_ outcome: Result<TaskRecord, any Error>) {
        let waiters = state.withLock { state in
            state.outcome = outcome
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }

    /// The task as written, once it is on disk; throws what the write threw.
    var written: TaskRecord {
        get async throws {
            let outcome = await withCheckedContinuation { continuation in
                let known = state.withLock { state in
                    if state.outcome == nil { state.waiters.append(continuation) }
                    return state.outcome
                }
                if let known { continuation.resume(returning: known) }
            }
            return try outcome.get()
        }
    }
}

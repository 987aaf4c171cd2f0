import Synchronization

/// A signal that fires once and wakes every waiter. A waiting task that is cancelled stops waiting
/// without firing the signal.
final class StopSignal: Sendable {
    private struct State {
        var fired = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }
    private let state = Mutex(State())

    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.fired = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when the signal fires or the calling task is cancelled.
    func wait() async {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.fired || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// Runs `call`, and fails it with `.unreachable(failure)` if the signal fires first.
    func guarding<T: Sendable>(_ call: @escaping @Sendable () async throws(WorkerCallError) -> T, failure: String) async throws(WorkerCallError) -> T {
        let outcome = await withTaskGroup(of: Result<T, WorkerCallError>?.self) { group in
            group.addTask {
                do throws(WorkerCallError) {
                    return .success(try await call())
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                await self.wait()
                return Task.isCancelled ? nil : .failure(.unreachable(failure))
            }
            var first: Result<T, WorkerCallError>?
            while first == nil, let next = await group.next() { first = next }
            group.cancelAll()
            return first ?? .failure(.unreachable("cancelled"))
        }
        return try outcome.get()
    }
}

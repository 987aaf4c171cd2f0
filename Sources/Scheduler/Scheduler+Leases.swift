import Foundation
import Logging
import SDBoxCore
import Synchronization

/// A worker lent to one call that is not a task (a passthrough call streamed between a client and a
/// worker) by ``Scheduler/lease(model:user:)``. The worker runs nothing else until the lease is released;
/// a lease that is dropped without ``release(healthy:)`` releases itself.
public final class WorkerLease: Sendable {
    /// Where the worker answers.
    public let endpoint: WorkerEndpoint
    public let model: String
    let id: String
    let scheduler: Scheduler
    let released = Atomic(false)

    init(id: String, endpoint: WorkerEndpoint, model: String, scheduler: Scheduler) {
        self.id = id
        self.endpoint = endpoint
        self.model = model
        self.scheduler = scheduler
    }

    /// Gives the worker back, and returns once the scheduler has it; a worker that broke the call
    /// (`healthy: false`) is stopped. Releasing twice does nothing.
    public func release(healthy: Bool = true) async {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        await scheduler.endLease(id, healthy: healthy)
    }

    deinit {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let (scheduler, id) = (scheduler, id)
        Task { await scheduler.endLease(id, healthy: true) }
    }
}

/// Why no worker could be lent.
public struct LeaseError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Scheduler {
    /// A lease waiting in its model's queue, or holding a worker.
    enum LeaseState {
        case waiting(CheckedContinuation<WorkerLease, any Error>)
        case granted(workerID: Int)
    }

    /// Waits for a worker of `model` as a task of `user` would (in its model's queue, taking the user's
    /// turns, within the caps, starting a
    /// worker if there is room) and lends it until the lease is released. Throws ``LeaseError`` when the
    /// model's workers cannot start or its pool is deleted, and `CancellationError` when the caller is
    /// cancelled while waiting.
    public func lease(model: String, user: String) async throws -> WorkerLease {
        let id = "lease-" + TaskID.make()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if shuttingDown {
                    continuation.resume(throwing: LeaseError("sdbox is shutting down"))
                } else if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    leases[id] = .waiting(continuation)
                    planner.enqueue(id, model: model, user: user, enqueuedAt: Date())
                    dispatch()
                }
            }
        } onCancel: {
            Task { await self.abandonLease(id) }
        }
    }

    /// Hands a worker the planner assigned to a waiting lease; false if `id` is not a waiting lease.
    func grantLease(_ id: String, workerID: Int, endpoint: WorkerEndpoint, model: String) -> Bool {
        guard case .waiting(let continuation) = leases[id] else { return false }
        leases[id] = .granted(workerID: workerID)
        continuation.resume(returning: WorkerLease(id: id, endpoint: endpoint, model: model, scheduler: self))
        return true
    }

    func endLease(_ id: String, healthy: Bool) {
        guard case .granted(let workerID) = leases.removeValue(forKey: id) else { return }
        workerFreed(workerID, healthy: healthy)
    }

    func abandonLease(_ id: String) {
        guard case .waiting(let continuation) = leases[id] else { return }
        leases[id] = nil
        planner.remove(id)
        continuation.resume(throwing: CancellationError())
    }

    /// Fails queued ids the planner gave up on: tasks end `failed` with `reason`, leases throw it.
    func failQueued(_ ids: [String], reason: String) async {
        for id in ids {
            if case .waiting(let continuation) = leases[id] {
                leases[id] = nil
                continuation.resume(throwing: LeaseError(reason))
            } else {
                await runner.finish(id, state: .failed, error: reason)
            }
        }
    }

    /// Fails every waiting lease (at shutdown).
    func failWaitingLeases(reason: String) {
        for (id, state) in leases {
            guard case .waiting(let continuation) = state else { continue }
            leases[id] = nil
            continuation.resume(throwing: LeaseError(reason))
        }
    }

    /// Workers of a model that are lent out.
    func leasedWorkers(model: String) -> Int {
        leases.values.filter { state in
            guard case .granted(let workerID) = state else { return false }
            return planner.workers[workerID]?.model == model
        }.count
    }

    // MARK: Warm workers

    /// Where a warm worker of `model` answers, idle ones first, else busy; nil when none is warm. For calls
    /// a worker answers beside its running task (A1111 runs GET endpoints without its queue lock).
    public func warmWorkerEndpoint(model: String) -> WorkerEndpoint? {
        let warm = planner.liveWorkers(model: model).filter { $0.state == .ready || $0.state == .busy }
        guard let worker = warm.min(by: { ($0.state == .ready ? 0 : 1, $0.id) < ($1.state == .ready ? 0 : 1, $1.id) }) else { return nil }
        return worker.slot?.endpoint
    }

    /// Models that have a warm worker, the most recently used first.
    public func warmModels() -> [String] {
        var seen: Set<String> = []
        return planner.workers.values.filter { $0.state == .ready || $0.state == .busy }
            .sorted { ($0.lastUsed, $0.id) > ($1.lastUsed, $1.id) }
            .compactMap { seen.insert($0.model).inserted ? $0.model : nil }
    }

    /// Where every warm worker answers.
    public func warmWorkerEndpoints() -> [WorkerEndpoint] {
        planner.workers.values.filter { $0.state == .ready || $0.state == .busy }.compactMap { $0.slot?.endpoint }
    }

    /// Restarts every worker, or `model`'s (the original's `POST /restart`, a re-pointed model): idle and
    /// starting ones stop now, busy ones when their task or lease ends; no task fails, queued ones wait for
    /// the new workers the planner starts. Returns how many workers were asked to stop.
    public func restartWorkers(model: String? = nil) -> Int {
        let live = planner.workers.values.filter { $0.state != .stopping && (model == nil || $0.model == model) }
        retire(Array(live), reason: "restart")
        return live.count
    }

    /// Stops the idle workers of `model`, parked ones too (A1111's unload-checkpoint); busy ones finish
    /// their task. Returns how many were stopped. A pool kept warm (`minInstances`) starts them again.
    public func stopIdleWorkers(model: String) -> Int {
        let idle = planner.liveWorkers(model: model).filter { $0.state == .ready || $0.state == .parked }
        retire(idle, reason: "unload-checkpoint")
        return idle.count
    }
}

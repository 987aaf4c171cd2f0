import Foundation

/// A pool's settings with every value decided: what the ``DispatchPlanner`` needs of it.
public struct PoolPolicy: Sendable, Equatable {
    public var minInstances: Int
    public var maxInstances: Int
    public var idleTimeout: TimeInterval
    public var gpuMemoryMiB: Int

    public init(minInstances: Int = 0, maxInstances: Int = 1, idleTimeout: TimeInterval = 600, gpuMemoryMiB: Int = 8192) {
        self.minInstances = minInstances
        self.maxInstances = maxInstances
        self.idleTimeout = idleTimeout
        self.gpuMemoryMiB = gpuMemoryMiB
    }
}

/// The scheduling policy, as plain data and pure decisions: which queued task goes to which worker, when
/// a worker starts and on which GPU, and which worker stops. It reads no clock and starts or stops no
/// process; the ``Scheduler`` feeds it events, asks it to ``plan(now:)``, and carries out the
/// ``Decision``s. This keeps every rule testable deterministically. Its ``workers`` are the box's one
/// worker table: each entry also carries the scheduler's handle to the worker's process, which the
/// planner never uses.
///
/// Rules, in the order `plan` applies them:
/// 1. **Fairness**: a model with waiting tasks, no worker and no room, whose oldest task has waited at
///    least `fairnessWait`, takes the slot of an idle worker of a model whose own oldest task is younger:
///    that worker stops instead of taking its next task. Each task's wait is thus bounded even when a
///    busier model could keep every slot.
/// 2. **Dispatch**: each idle worker takes the next task of its model's queue.
/// 3. **Scale up**, models in order of their oldest waiting task: start workers (up to the pool's
///    `maxInstances`, the global `maxInstances`, and GPU memory) for tasks no worker will take; when
///    there is no room, stop the least recently used idle worker of another model that has nothing
///    queued (the fairness rule covers the rest).
/// 4. **Scale down**: a worker idle for its pool's `idleTimeout` stops, unless its pool is at `minInstances`.
/// 5. **Warm pools**: pools below `minInstances` start workers where there is room.
///
/// Each model's queue is a ``ModelQueue``: round robin between users, and within a user's own tasks by
/// waiting time adjusted by priority (each level counts as `priorityStep` seconds of waiting, so a higher
/// priority runs sooner and a lower one still runs); only admins' priority orders tasks across users.
public struct DispatchPlanner: Sendable {
    /// What to do next.
    public enum Decision: Sendable, Equatable {
        /// Start worker `workerID` for `model`, on GPU `gpu` (nil when there is no GPU).
        case start(workerID: Int, model: String, gpu: Int?)
        /// Send the task to the worker.
        case assign(taskID: String, workerID: Int)
        /// Stop the worker.
        case stop(workerID: Int, reason: StopReason)
        /// The model's queued tasks can never be placed; fail them.
        case reject(taskIDs: [String], model: String, reason: String)
    }

    /// Why a worker is stopped.
    public enum StopReason: String, Sendable {
        case idle = "idle timeout"
        case makeRoom = "make room for another model"
        case fairness = "yield to a model waiting too long"
    }

    /// Where a worker runs.
    enum Placement: Equatable {
        case cpu
        case gpu(Int)
    }

    /// A worker: what the planner decides on, and what the scheduler reports of it.
    public struct Worker: Sendable {
        public let id: Int
        public let model: String
        public var state: WorkerState
        public let gpu: Int?
        public let memoryMiB: Int
        /// When it last took or finished a task (or became ready): the order of idle timeouts and evictions.
        public var lastUsed: Date
        public var taskID: String?
        /// When it was planned, and when it entered its current state.
        public let startedAt: Date
        public var since: Date
        /// Tasks and leases it has finished.
        public var tasksServed = 0
        /// The scheduler's handle to its process, once started (see ``attach(_:to:)``).
        public internal(set) var process: WorkerProcess?
    }

    public let inventory: GPUInventory
    public var maxInstances: Int
    public var fairnessWait: TimeInterval
    public var priorityStep: TimeInterval
    public var defaultPolicy: PoolPolicy
    /// Policies of pools that differ from the default, or that must be kept warm.
    public var policies: [String: PoolPolicy] = [:]

    var queues: [String: ModelQueue] = [:]
    public private(set) var workers: [Int: Worker] = [:]
    /// Workers stopping to make room, and the model they make room for.
    var makingRoom: [Int: String] = [:]
    var nextWorkerID = 1
    var nextSequence: UInt64 = 0

    public init(inventory: GPUInventory, maxInstances: Int, defaultPolicy: PoolPolicy, fairnessWait: TimeInterval = 60, priorityStep: TimeInterval = 60) {
        self.inventory = inventory
        self.maxInstances = maxInstances
        self.defaultPolicy = defaultPolicy
        self.fairnessWait = fairnessWait
        self.priorityStep = priorityStep
    }

    public func policy(for model: String) -> PoolPolicy { policies[model] ?? defaultPolicy }

    // MARK: Queues

    /// Queues a task (or a lease) of `user`. A task queued again after its worker failed keeps its place
    /// by its original time.
    ///
    /// - Parameter crossUserPriority: Whether `priority` also orders the task against other users' (an
    ///   admin's task); otherwise it orders the user's own tasks only.
    public mutating func enqueue(
        _ id: String, model: String, user: String, priority: Int = 0, crossUserPriority: Bool = false, enqueuedAt: Date
    ) {
        queues[model, default: ModelQueue()].insert(
            ModelQueue.Entry(
                id: id, user: user, enqueuedAt: enqueuedAt,
                rank: enqueuedAt.timeIntervalSinceReferenceDate - Double(priority) * priorityStep,
                crossUserPriority: crossUserPriority ? priority : 0, sequence: nextSequence
            )
        )
        nextSequence += 1
    }

    /// Takes a queued task out of its queue; false if it was not queued.
    @discardableResult
    public mutating func remove(_ id: String) -> Bool {
        for model in queues.keys where queues[model]?.remove(id) == true {
            if queues[model]?.isEmpty == true { queues[model] = nil }
            return true
        }
        return false
    }

    /// Takes every queued task of a model out, returning their ids in queue order.
    public mutating func removeAll(model: String) -> [String] {
        queues.removeValue(forKey: model)?.order().map(\.id) ?? []
    }

    /// A queued task's model and its place in that model's queue (1 = next).
    public func position(of id: String) -> (model: String, position: Int)? {
        for (model, queue) in queues {
            if let index = queue.index(of: id) { return (model, index + 1) }
        }
        return nil
    }

    /// The ids of a model's queued tasks in the order they would run.
    public func queuedIDs(model: String) -> [String] {
        queues[model]?.order().map(\.id) ?? []
    }

    public func queuedCount(model: String) -> Int { queues[model]?.count ?? 0 }

    /// Queued tasks per model.
    public var queueDepths: [String: Int] { queues.filter { !$0.value.isEmpty }.mapValues(\.count) }

    // MARK: Worker events

    /// The process started for a worker the planner decided to start.
    mutating func attach(_ process: WorkerProcess, to id: Int) {
        workers[id]?.process = process
    }

    public mutating func workerReady(_ id: Int, now: Date) {
        guard workers[id]?.state == .starting else { return }
        workers[id]?.state = .ready
        workers[id]?.lastUsed = now
        workers[id]?.since = now
    }

    /// The worker's task (or lease) ended; a healthy worker is idle again, another one must stop.
    public mutating func taskDone(workerID: Int, healthy: Bool, now: Date) {
        guard let worker = workers[workerID] else { return }
        workers[workerID]?.taskID = nil
        workers[workerID]?.lastUsed = now
        workers[workerID]?.since = now
        workers[workerID]?.tasksServed += 1
        if worker.state == .busy { workers[workerID]?.state = healthy ? .ready : .stopping }
    }

    /// The worker is asked to stop outside of a plan (e.g. its pool was deleted).
    public mutating func markStopping(_ id: Int, now: Date) {
        workers[id]?.state = .stopping
        workers[id]?.since = now
    }

    /// The worker's process has ended; its resources are free.
    public mutating func workerGone(_ id: Int) {
        workers[id] = nil
        makingRoom[id] = nil
    }

    /// Workers of a model that are not stopping.
    public func liveWorkers(model: String) -> [Worker] {
        workers.values.filter { $0.model == model && $0.state != .stopping }
    }

    /// GPU memory reserved by workers on each GPU.
    public var reservedMemory: [Int: Int] {
        var reserved: [Int: Int] = [:]
        for worker in workers.values { if let gpu = worker.gpu { reserved[gpu, default: 0] += worker.memoryMiB } }
        return reserved
    }

    // MARK: Planning

    /// Decides what to do now, and updates its own view as if the decisions were carried out.
    public mutating func plan(now: Date) -> [Decision] {
        var decisions: [Decision] = []
        decisions += rejectUnplaceable()
        decisions += yieldForFairness(now: now)
        decisions += assignIdleWorkers(now: now)
        decisions += scaleUp(now: now)
        decisions += scaleDown(now: now)
        decisions += keepWarm(now: now)
        return decisions
    }

    mutating func rejectUnplaceable() -> [Decision] {
        guard let largest = inventory.gpus.map(\.memoryMiB).max() else { return [] }
        var decisions: [Decision] = []
        for model in queues.keys.sorted() where policy(for: model).gpuMemoryMiB > largest {
            let ids = removeAll(model: model)
            if ids.isEmpty { continue }
            let reason = "a worker for \(model) needs \(policy(for: model).gpuMemoryMiB) MiB of GPU memory; the largest GPU offers \(largest) MiB"
            decisions.append(.reject(taskIDs: ids, model: model, reason: reason))
        }
        return decisions
    }

    mutating func yieldForFairness(now: Date) -> [Decision] {
        var decisions: [Decision] = []
        for model in modelsByWait() {
            guard let head = queues[model]?.first, now.timeIntervalSince(head.enqueuedAt) >= fairnessWait,
                liveWorkers(model: model).isEmpty, placement(for: model) == nil, !makingRoom.values.contains(model)
            else { continue }
            let candidates = workers.values.filter { worker in
                guard worker.state == .ready, worker.model != model, frees(worker, for: model) else { return false }
                // Only a model whose own oldest task is younger yields.
                guard let theirs = queues[worker.model]?.first else { return true }
                return theirs.enqueuedAt > head.enqueuedAt
            }
            if let victim = candidates.min(by: { ($0.lastUsed, $0.id) < ($1.lastUsed, $1.id) }) {
                decisions.append(stop(victim.id, reason: .fairness, makingRoomFor: model, now: now))
            }
        }
        return decisions
    }

    mutating func assignIdleWorkers(now: Date) -> [Decision] {
        var decisions: [Decision] = []
        for worker in workers.values.sorted(by: { ($0.lastUsed, $0.id) < ($1.lastUsed, $1.id) }) where worker.state == .ready {
            guard let next = queues[worker.model]?.removeFirst() else { continue }
            if queues[worker.model]?.isEmpty == true { queues[worker.model] = nil }
            workers[worker.id]?.state = .busy
            workers[worker.id]?.taskID = next.id
            workers[worker.id]?.lastUsed = now
            workers[worker.id]?.since = now
            decisions.append(.assign(taskID: next.id, workerID: worker.id))
        }
        return decisions
    }

    mutating func scaleUp(now: Date) -> [Decision] {
        var decisions: [Decision] = []
        for model in modelsByWait() {
            let policy = policy(for: model)
            let live = liveWorkers(model: model)
            var unserved = queuedCount(model: model) - live.filter { $0.state == .starting }.count
            var count = live.count
            while unserved > 0 && count < policy.maxInstances {
                if let place = placement(for: model) {
                    decisions.append(start(model, at: place, now: now))
                    unserved -= 1
                    count += 1
                    continue
                }
                if !makingRoom.values.contains(model), let victim = idleVictim(for: model) {
                    decisions.append(stop(victim.id, reason: .makeRoom, makingRoomFor: model, now: now))
                }
                break
            }
        }
        return decisions
    }

    mutating func scaleDown(now: Date) -> [Decision] {
        var decisions: [Decision] = []
        for worker in workers.values.sorted(by: { ($0.lastUsed, $0.id) < ($1.lastUsed, $1.id) }) where worker.state == .ready {
            let policy = policy(for: worker.model)
            if now.timeIntervalSince(worker.lastUsed) >= policy.idleTimeout && liveWorkers(model: worker.model).count > policy.minInstances {
                decisions.append(stop(worker.id, reason: .idle, makingRoomFor: nil, now: now))
            }
        }
        return decisions
    }

    mutating func keepWarm(now: Date) -> [Decision] {
        var decisions: [Decision] = []
        for (model, policy) in policies.sorted(by: { $0.key < $1.key }) where policy.minInstances > 0 {
            var count = liveWorkers(model: model).count
            while count < min(policy.minInstances, policy.maxInstances), let place = placement(for: model) {
                decisions.append(start(model, at: place, now: now))
                count += 1
            }
        }
        return decisions
    }

    // MARK: Helpers

    /// Models with queued tasks, the one whose next task has waited longest (an admin's cross-user
    /// priority counting as waiting) first.
    func modelsByWait() -> [String] {
        func key(_ entry: ModelQueue.Entry) -> (Double, UInt64) {
            (entry.enqueuedAt.timeIntervalSinceReferenceDate - Double(entry.crossUserPriority) * priorityStep, entry.sequence)
        }
        return queues.compactMap { model, queue in queue.first.map { (model, key($0)) } }
            .sorted { $0.1 < $1.1 }
            .map(\.0)
    }

    /// Where a new worker for `model` would run now, or nil when the cap or memory forbids one.
    func placement(for model: String) -> Placement? {
        guard workers.count < maxInstances else { return nil }
        guard !inventory.gpus.isEmpty else { return workers.count < inventory.cpuSlots ? .cpu : nil }
        let need = policy(for: model).gpuMemoryMiB
        let reserved = reservedMemory
        let fitting = inventory.gpus.filter { $0.memoryMiB - reserved[$0.index, default: 0] >= need }
        // The GPU with the most free memory, so that work spreads over GPUs.
        return fitting.max { ($0.memoryMiB - reserved[$0.index, default: 0], -$0.index) < ($1.memoryMiB - reserved[$1.index, default: 0], -$1.index) }
            .map { .gpu($0.index) }
    }

    /// Whether stopping `worker` would let a worker for `model` be placed.
    func frees(_ worker: Worker, for model: String) -> Bool {
        var without = self
        without.workers[worker.id] = nil
        return without.placement(for: model) != nil
    }

    /// The idle worker to stop to make room for `model`: of a model with nothing queued, whose pool stays
    /// at or above its minimum if possible, least recently used first.
    func idleVictim(for model: String) -> Worker? {
        workers.values.filter { worker in
            worker.state == .ready && worker.model != model && queuedCount(model: worker.model) == 0 && frees(worker, for: model)
        }.min { a, b in
            let aBelowMin = liveWorkers(model: a.model).count <= policy(for: a.model).minInstances
            let bBelowMin = liveWorkers(model: b.model).count <= policy(for: b.model).minInstances
            return (aBelowMin ? 1 : 0, a.lastUsed, a.id) < (bBelowMin ? 1 : 0, b.lastUsed, b.id)
        }
    }

    mutating func start(_ model: String, at placement: Placement, now: Date) -> Decision {
        let id = nextWorkerID
        nextWorkerID += 1
        let gpu: Int? = if case .gpu(let index) = placement { index } else { nil }
        workers[id] = Worker(
            id: id, model: model, state: .starting, gpu: gpu, memoryMiB: gpu == nil ? 0 : policy(for: model).gpuMemoryMiB, lastUsed: now,
            startedAt: now, since: now
        )
        return .start(workerID: id, model: model, gpu: gpu)
    }

    mutating func stop(_ id: Int, reason: StopReason, makingRoomFor model: String?, now: Date) -> Decision {
        markStopping(id, now: now)
        if let model { makingRoom[id] = model }
        return .stop(workerID: id, reason: reason)
    }
}

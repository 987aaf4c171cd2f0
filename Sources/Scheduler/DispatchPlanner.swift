import Foundation
import SDBoxCore

/// A pool's settings with every value decided: what the ``DispatchPlanner`` needs of it.
public struct PoolPolicy: Sendable, Equatable {
    public var minInstances: Int
    public var maxInstances: Int
    public var idleTimeout: TimeInterval
    public var gpuMemoryMiB: Int
    /// System RAM one parked worker takes.
    public var hostMemoryMiB: Int

    public init(minInstances: Int = 0, maxInstances: Int = 1, idleTimeout: TimeInterval = 600, gpuMemoryMiB: Int = 8192, hostMemoryMiB: Int? = nil) {
        self.minInstances = minInstances
        self.maxInstances = maxInstances
        self.idleTimeout = idleTimeout
        self.gpuMemoryMiB = gpuMemoryMiB
        self.hostMemoryMiB = hostMemoryMiB ?? gpuMemoryMiB
    }
}

/// The scheduling policy, as plain data and pure decisions: which queued task goes to which worker, when
/// a worker starts and on which GPU, which worker is parked in system RAM, comes back, or stops. It reads
/// no clock and starts or stops no process; the ``Scheduler`` feeds it events, asks it to ``plan(now:)``,
/// and carries out the ``Decision``s. This keeps every rule testable deterministically. Its ``workers`` are
/// the box's one worker table: each entry also carries the scheduler's handle to the worker's process,
/// which the planner never uses.
///
/// A worker is in one of two tiers: on the GPU (or a CPU slot), holding its pool's `gpuMemoryMiB` and
/// one of the `maxInstances` slots, or *parked*: its process alive, its checkpoint in system RAM (A1111's
/// unload-checkpoint), holding its pool's `hostMemoryMiB` of the `hostMemoryMiB` budget and no slot. A
/// parked worker comes back in about a second where a new process takes a minute; so room on a GPU is
/// made by parking an idle worker, and only when the budget cannot hold it (or parking is off, a budget
/// of 0) by stopping one. The budget is kept in least-recently-used order over both tiers: a parked
/// worker used less recently than the one being parked stops to make it fit, a more recent one never does
/// (the idle worker then stops instead).
///
/// Rules, in the order `plan` applies them:
/// 1. **Fairness**: a model with waiting tasks, no worker on a GPU and no room, whose oldest task has
///    waited at least `fairnessWait`, takes the slot of an idle worker of a model whose own oldest task is
///    younger: that worker is parked (or stops) instead of taking its next task. Each task's wait is thus
///    bounded even when a busier model could keep every slot; until then a warm model serves its queue
///    without paying for a switch.
/// 2. **Dispatch**: each idle worker takes the next task of its model's queue.
/// 3. **Scale up**, models past the fairness bound first, then those a parked worker can serve (a reload
///    is the cheapest switch), then the rest, each group in order of its oldest waiting task: parked
///    workers of the model come back where their GPU has room, then new workers start (up to the pool's
///    `maxInstances`, the global `maxInstances`, and GPU memory) for tasks no worker will take; when there
///    is no room, the least recently used idle worker of another model that has nothing queued is parked
///    or stopped (the fairness rule covers the rest). Room that is free is used at once, while other
///    workers finish their tasks.
/// 4. **Scale down**: a worker idle for its pool's `idleTimeout`, on a GPU or parked, stops, unless its
///    pool is at `minInstances`.
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
        /// Move the idle worker's checkpoint to system RAM; answer with ``workerParked(_:now:)``.
        case park(workerID: Int, reason: StopReason)
        /// Bring the parked worker's checkpoint back to its GPU; answer with ``workerReloaded(_:now:)``.
        case reload(workerID: Int)
        /// Have the idle remote worker load `model`'s checkpoint in place of its own; answer with
        /// ``workerReady(_:now:)``, or ``remoteDown(_:now:)`` when it cannot.
        case switchCheckpoint(workerID: Int, model: String)
        /// Stop the worker.
        case stop(workerID: Int, reason: StopReason)
        /// The model's queued tasks can never be placed; fail them.
        case reject(taskIDs: [String], model: String, reason: String)
    }

    /// Why a worker is parked or stopped.
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
        /// The checkpoint it holds (a remote worker's may change; empty while it holds none it may serve).
        public internal(set) var model: String
        public var state: WorkerState
        /// On the GPU, or parked in system RAM; a stopping worker keeps the tier it stops from.
        public internal(set) var tier: WorkerTier = .gpu
        public let gpu: Int?
        public let memoryMiB: Int
        /// System RAM it takes while parked.
        public let hostMemoryMiB: Int
        /// When it last took or finished a task (or became ready): the order of idle timeouts and evictions.
        public var lastUsed: Date
        public var taskID: String?
        /// When it was planned, and when it entered its current state.
        public let startedAt: Date
        public var since: Date
        /// Tasks and leases it has finished.
        public var tasksServed = 0
        /// How many times it was parked, and brought back.
        public internal(set) var parks = 0
        public internal(set) var reloads = 0
        /// The GPU memory it last said it holds (after it became ready, parked or came back), if it says.
        public internal(set) var reportedMemoryMiB: Int?
        /// The scheduler's handle to its process, once started (see ``attach(_:to:)``).
        public internal(set) var process: WorkerProcess?
        /// The remote server it stands for, when sdbox did not start it (see ``addRemote(now:)``).
        public internal(set) var remote: RemoteWorker?
        /// Whether it is a remote server: one the planner never starts, parks or stops, and that holds
        /// neither GPU memory of this box nor a slot.
        public internal(set) var isRemote = false
        /// The models a remote worker may be switched to (`switchModels`); empty when it may not.
        public internal(set) var switchable: Set<String> = []

        /// What its tasks run on.
        public var slot: (any WorkerSlot)? { process ?? remote }

        /// Whether it holds GPU memory and a slot of this box.
        var onGPU: Bool { tier == .gpu && !isRemote }
    }

    public let inventory: GPUInventory
    public var maxInstances: Int
    /// System RAM parked workers may take together; 0 turns parking off (idle workers stop instead).
    public var hostMemoryMiB: Int
    public var fairnessWait: TimeInterval
    public var priorityStep: TimeInterval
    public var defaultPolicy: PoolPolicy
    /// Policies of pools that differ from the default, or that must be kept warm.
    public var policies: [String: PoolPolicy] = [:]
    /// Queues an admin has paused: their tasks wait, no worker takes one or starts for one.
    public var pause = QueuePause()
    /// In a fleet, the workers of each model on the other boxes: a pool's `maxInstances` and
    /// `minInstances` count them too.
    public var workersElsewhere: [String: Int] = [:]

    var queues: [String: ModelQueue] = [:]
    public private(set) var workers: [Int: Worker] = [:]
    /// Workers parking or stopping to make room, and the model they make room for.
    var makingRoom: [Int: String] = [:]
    var nextWorkerID = 1
    var nextSequence: UInt64 = 0

    public init(
        inventory: GPUInventory, maxInstances: Int, defaultPolicy: PoolPolicy, hostMemoryMiB: Int = 0, fairnessWait: TimeInterval = 60,
        priorityStep: TimeInterval = 60
    ) {
        self.inventory = inventory
        self.maxInstances = maxInstances
        self.hostMemoryMiB = hostMemoryMiB
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

    /// The worker's checkpoint is in system RAM: its GPU memory and slot are free.
    public mutating func workerParked(_ id: Int, now: Date) {
        guard workers[id]?.state == .parking else { return }
        workers[id]?.state = .parked
        workers[id]?.tier = .ram
        workers[id]?.since = now
        workers[id]?.parks += 1
        makingRoom[id] = nil
    }

    /// The worker's checkpoint is back on its GPU: it is ready.
    public mutating func workerReloaded(_ id: Int, now: Date) {
        guard workers[id]?.state == .reloading else { return }
        workers[id]?.state = .ready
        workers[id]?.lastUsed = now
        workers[id]?.since = now
        workers[id]?.reloads += 1
    }

    /// The worker said how much GPU memory it holds.
    mutating func memoryReported(_ id: Int, mebibytes: Int?) {
        workers[id]?.reportedMemoryMiB = mebibytes
    }

    /// The worker's task (or lease) ended; a healthy worker is idle again, another one must stop (a
    /// remote one is down until it answers again).
    public mutating func taskDone(workerID: Int, healthy: Bool, now: Date) {
        guard let worker = workers[workerID] else { return }
        workers[workerID]?.taskID = nil
        workers[workerID]?.lastUsed = now
        workers[workerID]?.since = now
        workers[workerID]?.tasksServed += 1
        if worker.state == .busy { workers[workerID]?.state = healthy ? .ready : (worker.isRemote ? .down : .stopping) }
    }

    /// Adds a remote worker, down until its first probe answers; returns its id.
    mutating func addRemote(now: Date) -> Int {
        let id = nextWorkerID
        nextWorkerID += 1
        workers[id] = Worker(id: id, model: "", state: .down, gpu: nil, memoryMiB: 0, hostMemoryMiB: 0, lastUsed: now, startedAt: now, since: now)
        workers[id]?.isRemote = true
        return id
    }

    /// The remote worker's server, once created.
    mutating func attach(_ remote: RemoteWorker, to id: Int) {
        workers[id]?.remote = remote
    }

    /// A probe of the remote worker answered: it holds `model` (empty: none it may serve), and may be
    /// switched to `switchable`. A worker that was down is ready again; a busy or switching one is left be.
    mutating func remoteAnswered(_ id: Int, model: String, switchable: Set<String> = [], now: Date) {
        guard let worker = workers[id], worker.isRemote, worker.state != .starting else { return }
        workers[id]?.switchable = switchable
        if worker.state == .down {
            workers[id]?.state = .ready
            workers[id]?.since = now
            workers[id]?.lastUsed = now
        }
        if worker.state != .busy { workers[id]?.model = model }
    }

    /// A probe of the idle remote worker failed, or it could not switch checkpoints: it is down.
    mutating func remoteDown(_ id: Int, now: Date) {
        guard workers[id]?.isRemote == true, workers[id]?.state == .ready || workers[id]?.state == .starting else { return }
        workers[id]?.state = .down
        workers[id]?.since = now
    }

    /// The worker is asked to stop outside of a plan (e.g. its pool was deleted, or it could not park).
    public mutating func markStopping(_ id: Int, now: Date) {
        workers[id]?.state = .stopping
        workers[id]?.since = now
    }

    /// The worker's process has ended; its resources are free.
    public mutating func workerGone(_ id: Int) {
        workers[id] = nil
        makingRoom[id] = nil
    }

    /// Workers of a model that are not stopping (nor down), in either tier, local or remote.
    public func liveWorkers(model: String) -> [Worker] {
        workers.values.filter { $0.model == model && $0.state != .stopping && $0.state != .down }
    }

    /// GPU memory reserved by workers on each GPU (parked workers hold none).
    public var reservedMemory: [Int: Int] {
        var reserved: [Int: Int] = [:]
        for worker in workers.values where worker.onGPU {
            if let gpu = worker.gpu { reserved[gpu, default: 0] += worker.memoryMiB }
        }
        return reserved
    }

    /// System RAM taken by parked workers, and by those being parked.
    public var parkedMemory: Int {
        workers.values.filter { $0.tier == .ram || $0.state == .parking }.reduce(0) { $0 + $1.hostMemoryMiB }
    }

    /// Workers holding a slot: on a GPU (or a CPU slot), not parked.
    var slotsTaken: Int { workers.values.filter(\.onGPU).count }

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
        var decisions: [Decision] = []
        for model in queues.keys.sorted() {
            guard let reason = unplaceable(model) else { continue }
            let ids = removeAll(model: model)
            if ids.isEmpty { continue }
            decisions.append(.reject(taskIDs: ids, model: model, reason: reason))
        }
        return decisions
    }

    /// Why no worker of this box can ever serve `model` (its pool needs more GPU memory than the largest
    /// GPU has, and no remote worker serves it); nil when one can.
    public func unplaceable(_ model: String) -> String? {
        guard let largest = inventory.gpus.map(\.memoryMiB).max(), policy(for: model).gpuMemoryMiB > largest else { return nil }
        guard !workers.values.contains(where: { $0.isRemote && ($0.model == model || $0.switchable.contains(model)) }) else { return nil }
        return "a worker for \(model) needs \(policy(for: model).gpuMemoryMiB) MiB of GPU memory; the largest GPU offers \(largest) MiB"
    }

    mutating func yieldForFairness(now: Date) -> [Decision] {
        var decisions: [Decision] = []
        for model in modelsByWait() {
            guard let head = queues[model]?.first, now.timeIntervalSince(head.enqueuedAt) >= fairnessWait,
                !liveWorkers(model: model).contains(where: { $0.tier == .gpu }), !canServe(model), !makingRoom.values.contains(model)
            else { continue }
            let candidates = workers.values.filter { worker in
                guard worker.state == .ready, !worker.isRemote, worker.model != model, frees(worker, for: model) else { return false }
                // Only a model whose own oldest task is younger yields.
                guard let theirs = queues[worker.model]?.first else { return true }
                return theirs.enqueuedAt > head.enqueuedAt
            }
            if let victim = candidates.min(by: Self.leastRecentlyUsed) {
                decisions += evict(victim, reason: .fairness, for: model, now: now)
            }
        }
        return decisions
    }

    mutating func assignIdleWorkers(now: Date) -> [Decision] {
        var decisions: [Decision] = []
        for worker in workers.values.sorted(by: Self.leastRecentlyUsed) where worker.state == .ready && !pause.holds(worker.model) {
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
        for model in modelsBySwitchCost(now: now) {
            let live = liveWorkers(model: model)
            var unserved = queuedCount(model: model) - live.filter { $0.state == .starting || $0.state == .reloading }.count
            // Parked workers come back first, the most recently used first: a reload is the cheapest switch.
            for parked in live.filter({ $0.state == .parked }).sorted(by: { Self.leastRecentlyUsed($1, $0) }) where unserved > 0 && canReload(parked) {
                decisions.append(reload(parked.id, now: now))
                unserved -= 1
            }
            var count = live.count
            while unserved > 0 {
                if count < instanceCap(for: model), let place = placement(for: model) {
                    decisions.append(start(model, at: place, now: now))
                    unserved -= 1
                    count += 1
                    continue
                }
                if count < instanceCap(for: model), let remote = idleRemote(for: model) {
                    decisions.append(switchCheckpoint(of: remote.id, to: model, now: now))
                    unserved -= 1
                    count += 1
                    continue
                }
                if !makingRoom.values.contains(model), let victim = idleVictim(for: model) {
                    decisions += evict(victim, reason: .makeRoom, for: model, now: now)
                }
                break
            }
        }
        return decisions
    }

    mutating func scaleDown(now: Date) -> [Decision] {
        var decisions: [Decision] = []
        for worker in workers.values.sorted(by: Self.leastRecentlyUsed) where (worker.state == .ready || worker.state == .parked) && !worker.isRemote {
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
            while count < min(policy.minInstances - workersElsewhere[model, default: 0], instanceCap(for: model)), let place = placement(for: model) {
                decisions.append(start(model, at: place, now: now))
                count += 1
            }
        }
        return decisions
    }

    // MARK: Helpers

    /// The order of idle timeouts and evictions: least recently used first, then by id.
    static func leastRecentlyUsed(_ a: Worker, _ b: Worker) -> Bool { (a.lastUsed, a.id) < (b.lastUsed, b.id) }

    /// Models with queued tasks whose queues are not paused, the one whose next task has waited longest
    /// (an admin's cross-user priority counting as waiting) first.
    func modelsByWait() -> [String] {
        func key(_ entry: ModelQueue.Entry) -> (Double, UInt64) {
            (entry.enqueuedAt.timeIntervalSinceReferenceDate - Double(entry.crossUserPriority) * priorityStep, entry.sequence)
        }
        return queues.filter { !pause.holds($0.key) }.compactMap { model, queue in queue.first.map { (model, key($0)) } }
            .sorted { $0.1 < $1.1 }
            .map(\.0)
    }

    /// Models with queued tasks in the order they get room: those whose next task has waited past the
    /// fairness bound, then those a parked worker of theirs can serve, then the rest; by wait within each.
    func modelsBySwitchCost(now: Date) -> [String] {
        let byWait = modelsByWait()
        func group(_ model: String) -> Int {
            if let head = queues[model]?.first, now.timeIntervalSince(head.enqueuedAt) >= fairnessWait { return 0 }
            return liveWorkers(model: model).contains { $0.state == .parked } ? 1 : 2
        }
        return byWait.enumerated().sorted { (group($0.element), $0.offset) < (group($1.element), $1.offset) }.map(\.element)
    }

    /// How many workers `model`'s pool may have on this box: its `maxInstances`, less those on other boxes.
    func instanceCap(for model: String) -> Int {
        policy(for: model).maxInstances - workersElsewhere[model, default: 0]
    }

    /// Where a new worker for `model` would run now, or nil when the cap or memory forbids one.
    func placement(for model: String) -> Placement? {
        guard slotsTaken < maxInstances else { return nil }
        guard !inventory.gpus.isEmpty else { return slotsTaken < inventory.cpuSlots ? .cpu : nil }
        let need = policy(for: model).gpuMemoryMiB
        let reserved = reservedMemory
        let fitting = inventory.gpus.filter { $0.memoryMiB - reserved[$0.index, default: 0] >= need }
        // The GPU with the most free memory, so that work spreads over GPUs.
        return fitting.max { ($0.memoryMiB - reserved[$0.index, default: 0], -$0.index) < ($1.memoryMiB - reserved[$1.index, default: 0], -$1.index) }
            .map { .gpu($0.index) }
    }

    /// Whether the parked `worker` could come back to its GPU now (a worker stays on the GPU it started on).
    func canReload(_ worker: Worker) -> Bool {
        guard slotsTaken < maxInstances else { return false }
        guard let gpu = worker.gpu, let device = inventory.gpus.first(where: { $0.index == gpu }) else {
            return slotsTaken < inventory.cpuSlots
        }
        return device.memoryMiB - reservedMemory[gpu, default: 0] >= worker.memoryMiB
    }

    /// Whether a task of `model` could get a worker now: a parked one back, or a new one.
    func canServe(_ model: String) -> Bool {
        let live = liveWorkers(model: model)
        if live.contains(where: { $0.state == .parked && canReload($0) }) { return true }
        return live.count < instanceCap(for: model) && placement(for: model) != nil
    }

    /// Whether taking `worker` off its GPU would let a task of `model` get a worker.
    func frees(_ worker: Worker, for model: String) -> Bool {
        var without = self
        without.workers[worker.id] = nil
        return without.canServe(model)
    }

    /// The idle worker to take off its GPU to make room for `model`: of a model with nothing queued, whose
    /// pool stays at or above its minimum if possible, least recently used first.
    func idleVictim(for model: String) -> Worker? {
        workers.values.filter { worker in
            worker.state == .ready && !worker.isRemote && worker.model != model && queuedCount(model: worker.model) == 0
                && frees(worker, for: model)
        }.min { a, b in
            let aBelowMin = liveWorkers(model: a.model).count <= policy(for: a.model).minInstances
            let bBelowMin = liveWorkers(model: b.model).count <= policy(for: b.model).minInstances
            return (aBelowMin ? 1 : 0, a.lastUsed, a.id) < (bBelowMin ? 1 : 0, b.lastUsed, b.id)
        }
    }

    /// The idle remote worker to switch to `model`'s checkpoint: one that may, holding a model with nothing
    /// queued, least recently used first. A switch costs what a cold start does.
    func idleRemote(for model: String) -> Worker? {
        workers.values.filter { worker in
            worker.isRemote && worker.state == .ready && worker.model != model && worker.switchable.contains(model)
                && queuedCount(model: worker.model) == 0
        }.min(by: Self.leastRecentlyUsed)
    }

    mutating func switchCheckpoint(of id: Int, to model: String, now: Date) -> Decision {
        workers[id]?.state = .starting
        workers[id]?.model = model
        workers[id]?.since = now
        return .switchCheckpoint(workerID: id, model: model)
    }

    /// Frees `victim`'s GPU memory and slot for `model`: parks it when the host memory budget can hold it,
    /// stopping parked workers used less recently than it if need be; otherwise stops it.
    mutating func evict(_ victim: Worker, reason: StopReason, for model: String, now: Date) -> [Decision] {
        guard let dropped = parkingRoom(for: victim, makingRoomFor: model) else {
            return [stop(victim.id, reason: reason, makingRoomFor: model, now: now)]
        }
        var decisions = dropped.map { stop($0, reason: .makeRoom, makingRoomFor: nil, now: now) }
        workers[victim.id]?.state = .parking
        workers[victim.id]?.since = now
        makingRoom[victim.id] = model
        decisions.append(.park(workerID: victim.id, reason: reason))
        return decisions
    }

    /// The parked workers to stop so that `worker` fits in the host memory budget (least recently used
    /// first, and only those used less recently than it), or nil when it cannot be parked. A parked worker
    /// of `model`, for which room is made, is never stopped: it leaves RAM as `worker` enters it, so its
    /// share counts as free (RAM briefly holds both checkpoints).
    func parkingRoom(for worker: Worker, makingRoomFor model: String) -> [Int]? {
        guard hostMemoryMiB > 0, worker.hostMemoryMiB <= hostMemoryMiB else { return nil }
        let parked = workers.values.filter { $0.state == .parked }
        let comingBack = parked.filter { $0.model == model }.max(by: Self.leastRecentlyUsed)
        var free = hostMemoryMiB - parkedMemory + (comingBack?.hostMemoryMiB ?? 0)
        var dropped: [Int] = []
        for candidate in parked.sorted(by: Self.leastRecentlyUsed) where free < worker.hostMemoryMiB && candidate.id != comingBack?.id {
            guard Self.leastRecentlyUsed(candidate, worker) else { break }
            dropped.append(candidate.id)
            free += candidate.hostMemoryMiB
        }
        return free >= worker.hostMemoryMiB ? dropped : nil
    }

    mutating func start(_ model: String, at placement: Placement, now: Date) -> Decision {
        let id = nextWorkerID
        nextWorkerID += 1
        let gpu: Int? = if case .gpu(let index) = placement { index } else { nil }
        let policy = policy(for: model)
        workers[id] = Worker(
            id: id, model: model, state: .starting, gpu: gpu, memoryMiB: gpu == nil ? 0 : policy.gpuMemoryMiB,
            hostMemoryMiB: policy.hostMemoryMiB, lastUsed: now, startedAt: now, since: now
        )
        return .start(workerID: id, model: model, gpu: gpu)
    }

    mutating func reload(_ id: Int, now: Date) -> Decision {
        workers[id]?.state = .reloading
        workers[id]?.tier = .gpu
        workers[id]?.since = now
        return .reload(workerID: id)
    }

    mutating func stop(_ id: Int, reason: StopReason, makingRoomFor model: String?, now: Date) -> Decision {
        markStopping(id, now: now)
        if let model { makingRoom[id] = model }
        return .stop(workerID: id, reason: reason)
    }
}

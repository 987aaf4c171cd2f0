import Foundation
import Logging
import ObjectStore
import SDBoxCore
import ServiceLifecycle
import Storage

/// The GPU scheduler: a pool of worker processes per checkpoint, within a global instance cap and the
/// GPUs' memory, fed from per-model queues of persisted tasks. It lends workers; its ``TaskRunner`` runs
/// the tasks on them.
///
/// The rules (which task, which worker, start, stop, evict) live in ``DispatchPlanner``; this actor
/// carries its decisions out with real processes: it starts and stops workers, grants each assigned task's
/// worker to the runner, and takes the worker back when the run ends.
///
/// Nothing is lost: a task is persisted before it is submitted; a task whose worker dies is queued again
/// (up to ``SchedulerConfiguration/maxAttempts`` tries); at start the scheduler re-queues, in their
/// original order, the tasks a previous sdbox left queued or running.
///
/// Calls that are not tasks (streamed passthrough calls) borrow a worker through the same queues with
/// ``lease(model:user:)``, so a worker never runs two things at once.
public actor Scheduler: Service {
    let configuration: SchedulerConfiguration
    let catalog: any CatalogStore
    let logger: Logger
    public nonisolated let inventory: GPUInventory
    /// Runs the tasks on the workers granted to them.
    public nonisolated let runner: TaskRunner
    /// Reads checkpoints into the page cache before their workers load them.
    nonisolated let readAhead: CheckpointReadAhead
    /// Model states and finished tasks, in order (see ``SchedulerEvent``).
    public nonisolated let events: AsyncStream<SchedulerEvent>
    /// In a fleet: a signal each time this box may have room for another task (``claimRoom()``).
    public nonisolated let roomSignals: AsyncStream<Void>
    let roomSignal: AsyncStream<Void>.Continuation
    /// In a fleet: the latest progress of tasks running on other boxes, as they announce it.
    nonisolated let progressElsewhere = ProgressBoard(freshness: .seconds(3600))
    /// In a fleet: how a cancel reaches a task this box does not hold (``forwardCancels(to:)``).
    var cancelElsewhere: (@Sendable (String) async throws -> TaskRecord?)?

    enum Job: Sendable {
        case supervise(WorkerProcess)
        case probe(RemoteWorker)
        /// Runs a task on the worker granted to it, within its pool's task timeout (decided with the grant, so
        /// that the run starts without another turn of the actor).
        case execute(taskID: String, worker: any WorkerSlot, timeoutSeconds: Int)
    }

    /// The rules, and the one table of workers.
    var planner: DispatchPlanner
    /// Each pool's own settings, as stored in its pool record.
    var poolSettings: [String: PoolSettings] = [:]
    var models: [String: ModelHistory] = [:]
    /// Workers lent to calls that are not tasks, and the calls waiting for one (see ``lease(model:user:)``).
    var leases: [String: LeaseState] = [:]
    var metrics = SchedulerMetrics()
    /// Whether ``run()`` is running (for readiness checks).
    public private(set) var isRunning = false
    var jobs: AsyncStream<Job>.Continuation?
    var shuttingDown = false

    public init(
        configuration: SchedulerConfiguration, inventory: GPUInventory, tasks: any TaskStore, catalog: any CatalogStore,
        objects: ObjectStore, client: any WorkerClient, logger: Logger
    ) {
        self.configuration = configuration
        self.inventory = inventory
        self.catalog = catalog
        self.logger = logger
        let (events, sink) = AsyncStream.makeStream(of: SchedulerEvent.self)
        self.events = events
        (roomSignals, roomSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.readAhead = CheckpointReadAhead(budgetMiB: configuration.readAheadMiB, logger: logger)
        self.runner = TaskRunner(configuration: configuration, tasks: tasks, objects: objects, client: client, logger: logger, events: sink)
        self.planner = DispatchPlanner(
            inventory: inventory, maxInstances: configuration.maxInstances, defaultPolicy: configuration.policy(PoolSettings()),
            hostMemoryMiB: configuration.hostMemoryMiB, fairnessWait: configuration.fairnessWaitSeconds, priorityStep: configuration.prioritySeconds
        )
    }

    // MARK: Service

    /// Loads pool settings, re-queues what a previous run left unfinished, then runs workers and tasks
    /// until graceful shutdown.
    public func run() async throws {
        for directory in [configuration.runDirectory, configuration.logDirectory] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let reaped = WorkerReaper.reap(in: configuration.runDirectory)
        if !reaped.isEmpty { logger.warning("killed workers left by a previous run", metadata: ["pids": "\(reaped)"]) }
        for function in try await catalog.pools() { apply(function.settings, to: function.model) }
        planner.pause = try await catalog.queuePause()
        if !configuration.sharedQueue { try await recover() }
        let (stream, continuation) = AsyncStream.makeStream(of: Job.self)
        jobs = continuation
        logger.info(
            "scheduler started",
            metadata: [
                "gpus": "\(inventory.gpus.map { "\($0.index):\($0.name):\($0.memoryMiB)MiB" })", "source": "\(inventory.source.rawValue)",
                "maxInstances": "\(configuration.maxInstances)",
            ]
        )
        await addRemoteWorkers()
        dispatch()
        isRunning = true
        defer { isRunning = false }
        await withDiscardingTaskGroup { group in
            group.addTask {
                // Idle timeouts and fairness deadlines pass without any event: look again every second.
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    await self.dispatch()
                }
            }
            for await job in stream.cancelOnGracefulShutdown() {
                switch job {
                case .supervise(let worker):
                    group.addTask { await self.supervise(worker) }
                case .probe(let remote):
                    group.addTask { await self.watchRemote(remote) }
                case .execute(let taskID, let worker, let timeoutSeconds):
                    group.addTask {
                        await self.runner.run(taskID, on: worker, timeoutSeconds: timeoutSeconds) { ending in
                            await self.runEnded(of: worker, ending)
                        }
                    }
                }
            }
            beginShutdown()
            group.cancelAll()
        }
        logger.info("scheduler stopped")
    }

    func beginShutdown() {
        shuttingDown = true
        runner.shutDown()
        failWaitingLeases(reason: "sdbox is shutting down")
        jobs?.finish()
        for worker in planner.workers.values { worker.process?.stop() }
    }

    /// Puts unfinished tasks of a previous run back in their queues in their original order; a task that
    /// was running counts that as an attempt, and fails if it has had them all. On a full disk this waits
    /// for space (the scheduler is not ready meanwhile; the API answers).
    func recover() async throws {
        let active = try await runner.tasks.activeTasks()
        for task in active {
            var task = task
            if task.state == .running {
                let attempts = task.attempts
                do {
                    if attempts >= configuration.maxAttempts {
                        task = try await runner.persist(task.id) {
                            $0.state = .failed
                            $0.finishedAt = Date()
                            $0.error = "sdbox stopped while the task was running, \(attempts) attempts"
                        }
                        runner.events.yield(.taskFinished(task))
                        continue
                    }
                    task = try await runner.persist(task.id) { $0.state = .queued }
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    // One task that cannot be written must not keep every other from running.
                    logger.error("could not recover task", metadata: ["task": "\(task.id)", "error": "\(ErrorSummary(error))"])
                    continue
                }
            }
            requeue(task)
            runner.usage.add(task: task.id, user: task.user, bytes: task.request.storageSize)
        }
        if !active.isEmpty { logger.info("recovered unfinished tasks", metadata: ["count": "\(active.count)"]) }
    }

    // MARK: Submitting and cancelling

    /// Queues a task that is already persisted and was admitted (``UsageLedger/admit(user:bytes:maxTasks:maxBytes:)``).
    public func submit(_ task: TaskRecord) {
        requeue(task)
        dispatch()
    }

    /// Puts a task in its model's queue, in its place by its original time.
    func requeue(_ task: TaskRecord) {
        planner.enqueue(
            task.id, model: task.model, user: task.user, priority: task.priority,
            crossUserPriority: task.priorityAcrossUsers ?? false, enqueuedAt: task.createdAt
        )
    }

    /// Takes back a task that could not be written after all (``TaskRunner/beginWriting(_:)``):
    /// out of its queue, or, if it already runs, interrupted (its outcome cannot be recorded).
    public func withdraw(_ id: String) async {
        if planner.remove(id) { return }
        _ = await runner.cancel(id)
    }

    /// Cancels a task: a queued task is cancelled at once; a running one is interrupted on its worker and
    /// becomes `cancelled` when the worker lets go of it. Returns the task as it now stands.
    public func cancel(_ id: String) async throws -> TaskRecord? {
        if planner.remove(id) {
            do {
                return try await runner.cancelQueued(id)
            } catch {
                // Not cancelled after all (the disk is full, say): the task keeps its place.
                if let queued = try? await runner.tasks.get(id), queued.state == .queued {
                    requeue(queued)
                    dispatch()
                }
                throw error
            }
        }
        if await runner.cancel(id) { return try await runner.tasks.get(id) }
        if let cancelElsewhere { return try await cancelElsewhere(id) }
        return try await runner.tasks.get(id)
    }

    // MARK: Progress and reports

    /// Where a task stands: its queue position and estimated time, or its worker's latest progress report
    /// (about ``ProgressBoard/freshness`` old, so that clients polling a task in their thousands cost its
    /// worker a few calls a second, and neither queue on the scheduler nor wait for the worker).
    public nonisolated func progress(of id: String) async -> TaskProgress {
        if let report = runner.postedProgress(of: id) { return .running(report) }
        if let queued = await queuedProgress(of: id) { return queued }
        if let local = await runner.progress(of: id) { return local }
        if let remote = progressElsewhere.latest(of: id) { return .running(remote.report) }
        return .notActive
    }

    /// A queued task's place and estimated time, in one visit to the actor; nil when it is not queued.
    func queuedProgress(of id: String) -> TaskProgress? {
        guard let (model, position) = planner.position(of: id) else { return nil }
        return .queued(position: position, eta: estimatedWait(model: model, position: position))
    }

    /// Seconds until the task at `position` in `model`'s queue is done, from the model's recent pace.
    func estimatedWait(model: String, position: Int) -> Double? {
        guard let pace = models[model]?.pace, let perTask = pace.taskSeconds else { return nil }
        let workers = planner.liveWorkers(model: model)
        let parallel = max(1, workers.count)
        let coldStart: Double =
            if workers.contains(where: { $0.tier == .gpu }) { 0 }
            else if !workers.isEmpty { pace.reloadSeconds ?? pace.loadSeconds ?? 0 }
            else { pace.loadSeconds ?? 0 }
        return coldStart + Double((position + parallel - 1) / parallel + (workers.contains { $0.state == .busy } ? 1 : 0)) * perTask
    }

    /// Every live worker.
    public func workers() -> [WorkerInfo] {
        planner.workers.values.compactMap { worker -> WorkerInfo? in
            guard worker.process != nil || worker.remote != nil else { return nil }
            return WorkerInfo(
                id: worker.id, model: worker.model, function: PoolRecord.name(forModel: worker.model), gpu: worker.gpu,
                gpuMemoryMiB: worker.memoryMiB, port: worker.process?.port, pid: worker.process?.processID,
                remote: worker.remote.map(RemoteWorkerInfo.init), state: worker.state, tier: worker.tier,
                hostMemoryMiB: worker.hostMemoryMiB, gpuMemoryInUseMiB: worker.reportedMemoryMiB, since: worker.since, tasksServed: worker.tasksServed, parks: worker.parks,
                reloads: worker.reloads, taskId: worker.taskID.flatMap { leases[$0] == nil ? $0 : nil }
            )
        }.sorted { $0.id < $1.id }
    }

    /// Every GPU with the memory planned for its workers.
    public func gpus() -> [GPUUsage] {
        let reserved = planner.reservedMemory
        return inventory.gpus.map { gpu in
            let mine = planner.workers.values.filter { $0.gpu == gpu.index }
            let reported = mine.compactMap(\.reportedMemoryMiB)
            return GPUUsage(
                index: gpu.index, name: gpu.name, memoryMiB: gpu.memoryMiB, plannedMiB: reserved[gpu.index, default: 0],
                inUseMiB: reported.isEmpty ? nil : reported.reduce(0, +), workers: mine.count
            )
        }
    }

    /// Queued tasks per model.
    public func queueDepths() -> [String: Int] { planner.queueDepths }

    /// System RAM parked workers take now.
    public func parkedMemoryMiB() -> Int { planner.parkedMemory }

    /// Worker processes started per model since sdbox started.
    public func coldStarts() -> [String: Int] { models.compactMapValues { $0.coldStarts > 0 ? $0.coldStarts : nil } }

    // MARK: Pools

    /// A pool's settings with every field decided.
    public func settings(ofPool model: String) -> PoolSettings {
        configuration.effectiveSettings(poolSettings[model] ?? PoolSettings())
    }

    /// Checks a pool's new settings, persists them in its pool record and applies them.
    public func configurePool(model: String, settings: PoolSettings) async throws -> PoolRecord {
        let effective = configuration.effectiveSettings(settings)
        if let profile = effective.profile, configuration.profiles[profile] == nil {
            throw PoolSettingsError("unknown launch profile '\(profile)'; known: \(configuration.profiles.keys.sorted().joined(separator: ", "))")
        }
        let record = try await catalog.updatePool(model: model) { $0.settings = settings }
        apply(settings, to: model)
        dispatch()
        return record
    }

    /// Whether a model has tasks (or passthrough calls) queued or running.
    public func hasWork(model: String) -> Bool {
        planner.queuedCount(model: model) > 0 || runner.isRunning(model: model) || leasedWorkers(model: model) > 0
    }

    /// Deletes a pool, its model kept: its queued tasks fail with `reason`, idle workers stop, busy ones
    /// when their task ends, and its pool record goes. A later task for the model starts a new pool. (A
    /// deleted model's pool goes with its record, and ``dropPool(model:reason:stopRunning:)`` follows.)
    public func removePool(model: String, reason: String) async throws {
        try await catalog.removePool(model: model)
        await dropPool(model: model, reason: reason, stopRunning: false)
    }

    /// Lets go of a pool whose record is gone (``removePool(model:reason:)``, a deleted model,
    /// here or, in a fleet, on another box): its settings, its queued tasks here (failed with `reason`) and
    /// its workers.
    public func dropPool(model: String, reason: String, stopRunning: Bool) async {
        poolSettings[model] = nil
        planner.policies[model] = nil
        await failQueued(planner.removeAll(model: model), reason: reason)
        if stopRunning { runner.abort(model: model, reason: reason) }
        retire(planner.liveWorkers(model: model), reason: "pool deleted", interruptingBusy: stopRunning)
    }

    func apply(_ settings: PoolSettings, to model: String) {
        poolSettings[model] = settings
        let policy = configuration.policy(settings)
        // A pool to keep warm stays listed even when its policy is the default one: the planner keeps
        // warm the pools it lists.
        planner.policies[model] = policy == planner.defaultPolicy && policy.minInstances == 0 ? nil : policy
    }

    // MARK: Dispatching

    /// Asks the planner what to do now and does it.
    func dispatch() {
        guard !shuttingDown, jobs != nil else { return }
        for decision in planner.plan(now: Date()) {
            switch decision {
            case .assign(let taskID, let workerID):
                guard let slot = planner.workers[workerID]?.slot else { continue }
                if grantLease(taskID, workerID: workerID, endpoint: slot.endpoint, model: slot.model) { continue }
                runner.register(taskID, on: slot)
                jobs?.yield(.execute(taskID: taskID, worker: slot, timeoutSeconds: settings(ofPool: slot.model).taskTimeoutSeconds ?? 3600))
            case .start(let workerID, let model, let gpu):
                startWorker(workerID, for: model, gpu: gpu)
            case .park(let workerID, let reason):
                move(workerID, .park, reason: reason)
            case .reload(let workerID):
                move(workerID, .reload)
            case .switchCheckpoint(let workerID, let model):
                switchCheckpoint(of: workerID, to: model)
            case .stop(let workerID, let reason):
                logger.info("stopping worker", metadata: ["worker": "\(workerID)", "reason": "\(reason.rawValue)"])
                metrics.workerStopped(reason: reason)
                planner.workers[workerID]?.process?.stop()
            case .reject(let taskIDs, let model, let reason):
                logger.error("tasks cannot be placed", metadata: ["model": "\(model)", "reason": "\(reason)"])
                Task { await self.failQueued(taskIDs, reason: reason) }
            }
        }
        reportModelStates()
        if configuration.sharedQueue, claimRoom().count > 0 { roomSignal.yield() }
        metrics.record(planner, inventory: inventory)
        let waiting = planner.modelsByWait().filter { planner.liveWorkers(model: $0).isEmpty }
        readAhead.queued(waiting.map { ModelType.stableDiffusion.path(of: $0, in: configuration.modelsDirectory) })
    }

    func startWorker(_ id: Int, for model: String, gpu: Int?) {
        let settings = settings(ofPool: model)
        let profileName = settings.profile ?? configuration.defaultProfile
        guard let template = configuration.profiles[profileName], let port = FreePort.allocate() else {
            logger.error("cannot start a worker", metadata: ["model": "\(model)", "profile": "\(profileName)"])
            planner.workerGone(id)
            return
        }
        let checkpoint = ModelType.stableDiffusion.path(of: model, in: configuration.modelsDirectory)
        let values = WorkerLaunchProfile.placeholders(
            port: port, checkpoint: checkpoint, modelsDirectory: configuration.modelsDirectory,
            dataDirectory: configuration.dataDirectory, executablePath: configuration.executablePath,
            gpuMemoryMiB: gpu == nil ? 0 : planner.workers[id]?.memoryMiB ?? 0
        )
        var environment = settings.environment ?? [:]
        if let gpu { environment["CUDA_VISIBLE_DEVICES"] = "\(gpu)" }
        let profile = template.resolved(values, extraArgs: settings.extraArgs ?? [], environment: environment)
        let safeName = model.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }
        let process = WorkerProcess(
            id: id, model: model, port: port, profile: profile,
            logPath: "\(configuration.logDirectory)/worker-\(id)-\(String(safeName)).log",
            runDirectory: configuration.runDirectory
        )
        planner.attach(process, to: id)
        readAhead.starting(checkpoint)
        models[model, default: ModelHistory()].coldStarts += 1
        metrics.workerStarted(model: model)
        logger.info("starting worker", metadata: ["worker": "\(id)", "model": "\(model)", "gpu": "\(gpu.map(String.init) ?? "none")", "profile": "\(profileName)"])
        jobs?.yield(.supervise(process))
    }

    /// Tells the rest of sdbox about models whose state changed.
    func reportModelStates() {
        var states: [String: ModelStatus] = [:]
        for worker in planner.workers.values where worker.state != .stopping && worker.tier == .gpu {
            let status: ModelStatus = worker.state == .starting || worker.state == .reloading ? .loading : .loaded
            if states[worker.model] != .loaded { states[worker.model] = status }
        }
        for model in Set(models.filter { $0.value.reportedStatus != nil }.keys).union(states.keys) {
            let status = states[model] ?? .unloaded
            guard models[model]?.reportedStatus != status else { continue }
            models[model, default: ModelHistory()].reportedStatus = status
            runner.events.yield(.modelStatus(model: model, status: status, error: nil))
        }
    }

    // MARK: Workers

    /// Stops workers outside of a plan, then plans again: each is marked stopping at once; an idle or
    /// starting one stops now, a busy one when its task or lease ends (or now, with `interruptingBusy`).
    func retire(_ workers: [DispatchPlanner.Worker], reason: String, interruptingBusy: Bool = false) {
        for worker in workers {
            logger.info("stopping worker", metadata: ["worker": "\(worker.id)", "reason": "\(reason)"])
            planner.markStopping(worker.id, now: Date())
            if worker.state != .busy || interruptingBusy { worker.process?.stop() }
        }
        dispatch()
    }

    func supervise(_ worker: WorkerProcess) async {
        let exit = await worker.run(
            probe: { [client = runner.client] in await client.ping(worker.endpoint) },
            onReady: { await self.workerReady(worker.id) },
            logger: logger
        )
        await workerExited(worker, exit)
    }

    func workerReady(_ id: Int) {
        guard let worker = planner.workers[id] else { return }
        let now = Date()
        planner.workerReady(id, now: now)
        models[worker.model, default: ModelHistory()].startFailures = 0
        let loadSeconds = now.timeIntervalSince(worker.startedAt)
        models[worker.model, default: ModelHistory()].pace.recordLoad(seconds: loadSeconds)
        askMemoryInUse(of: id)
        logger.info("worker ready", metadata: ["worker": "\(id)", "model": "\(worker.model)", "loadSeconds": "\(loadSeconds)"])
        dispatch()
    }

    func workerExited(_ worker: WorkerProcess, _ exit: WorkerExit) async {
        let state = planner.workers[worker.id]?.state
        planner.workerGone(worker.id)
        let expected = state == .stopping || shuttingDown
        let output = exit.lastOutput.suffix(5).joined(separator: " | ")
        if expected {
            logger.info("worker stopped", metadata: ["worker": "\(worker.id)", "status": "\(exit.status)"])
        } else {
            logger.warning("worker exited", metadata: ["worker": "\(worker.id)", "model": "\(worker.model)", "status": "\(exit.status)", "output": "\(output)"])
        }
        if !exit.becameReady && !expected {
            let failures = (models[worker.model]?.startFailures ?? 0) + 1
            models[worker.model, default: ModelHistory()].startFailures = failures
            if failures >= configuration.maxStartFailures {
                models[worker.model]?.startFailures = 0
                let reason = "the worker for \(worker.model) failed to start \(failures) times (\(exit.status)): \(output)"
                await failQueued(planner.removeAll(model: worker.model), reason: reason)
                dispatch()
                models[worker.model]?.reportedStatus = .failed
                runner.events.yield(.modelStatus(model: worker.model, status: .failed, error: reason))
                return
            }
        }
        dispatch()
    }

    /// A run ended: its worker takes the next task (or stops if it failed under the task), a task whose
    /// worker was lost goes back to its queue, and the model's pace learns the generation's time.
    func runEnded(of worker: any WorkerSlot, _ ending: TaskRunner.Ending) {
        if let seconds = ending.generationSeconds { models[worker.model, default: ModelHistory()].pace.recordTask(seconds: seconds) }
        if let task = ending.requeue { requeue(task) }
        workerFreed(worker.id, healthy: ending.healthy)
    }

    /// A worker's task or lease ended: it takes the next one, or stops if it misbehaved or must go.
    func workerFreed(_ workerID: Int, healthy: Bool) {
        planner.taskDone(workerID: workerID, healthy: healthy, now: Date())
        if let worker = planner.workers[workerID], worker.state == .stopping {
            if worker.isRemote { planner.workerGone(workerID) } else { worker.process?.stop() }
        }
        dispatch()
    }
}

/// Pool settings that cannot be applied.
public struct PoolSettingsError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

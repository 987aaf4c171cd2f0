import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ObjectStore
import SDBoxCore
import ServiceLifecycle
import Storage

/// What a worker is doing, as the scheduler sees it.
public enum WorkerState: String, Codable, Sendable {
    /// Started; loading its checkpoint.
    case starting
    /// Ready and idle.
    case ready
    /// Running a task.
    case busy
    /// Asked to stop.
    case stopping
}

/// A worker as reported by ``Scheduler/workers()``.
public struct WorkerInfo: Codable, Sendable, Equatable {
    public var id: Int
    public var model: String
    /// The pool's function name.
    public var function: String
    /// The GPU it was placed on; nil on a box without GPU.
    public var gpu: Int?
    public var gpuMemoryMiB: Int
    public var port: Int
    public var pid: Int32?
    public var state: WorkerState
    /// When it entered its current state.
    public var since: Date
    public var tasksServed: Int
    /// The task it is running, when busy.
    public var taskId: String?
}

/// A GPU and the memory workers have reserved on it, as reported by ``Scheduler/gpus()``.
public struct GPUUsage: Codable, Sendable, Equatable {
    public var index: Int
    public var name: String
    public var memoryMiB: Int
    public var plannedMiB: Int
    public var workers: Int
}

/// Where a task stands, as reported by ``Scheduler/progress(of:)``.
public enum TaskProgress: Sendable {
    /// Waiting for a worker; `position` is 1 for the next task of its model to run; `eta` the estimated
    /// seconds until it finishes, once the model's pace is known.
    case queued(position: Int, eta: Double?)
    /// Running; the worker's own progress report, when it gave one.
    case running(A1111.Progress?)
    /// Not in the scheduler: finished, or unknown.
    case notActive
}

/// Told each time a task reaches a final state (succeeded, failed or cancelled), off the scheduler.
public typealias TaskFinalObserver = @Sendable (_ task: TaskRecord) async -> Void

/// Told when a model's state changes: `loading` when its first worker starts, `loaded` while a worker
/// holds it, `unloaded` when none does, `failed` (with the worker's output) when its workers fail to start.
public typealias ModelStateObserver = @Sendable (_ model: String, _ status: ModelStatus, _ error: String?) async -> Void

/// The GPU scheduler: a pool of worker processes per checkpoint, within a global instance cap and the
/// GPUs' memory, fed from per-model queues of persisted tasks.
///
/// The rules (which task, which worker, start, stop, evict) live in ``DispatchPlanner``; this actor
/// carries its decisions out with real processes and records every outcome in the ``TaskStore``.
///
/// Nothing is lost: a task is persisted before it is submitted; a task whose worker dies is queued again
/// (up to ``SchedulerConfiguration/maxAttempts`` tries); at start the scheduler re-queues, in their
/// original order, the tasks a previous sdbox left queued or running.
///
/// Calls that are not tasks (streamed passthrough calls) borrow a worker through the same queues with
/// ``lease(model:user:)``, so a worker never runs two things at once.
public actor Scheduler: Service {
    let configuration: SchedulerConfiguration
    let tasks: TaskStore
    let catalog: CatalogStore
    let objects: ObjectStore
    let client: WorkerClient
    let logger: Logger
    public nonisolated let inventory: GPUInventory

    /// A live worker process and what the planner does not track.
    struct WorkerHandle {
        let process: WorkerProcess
        var since: Date
        var tasksServed = 0
        let startedAt: ContinuousClock.Instant
    }

    struct Running {
        let workerID: Int
        var cancelRequested = false
        /// Set when the task must fail whatever its worker answers (its model was deleted).
        var abortReason: String?
    }

    enum Job: Sendable {
        case supervise(WorkerProcess)
        case execute(taskID: String, worker: WorkerProcess)
    }

    var planner: DispatchPlanner
    var handles: [Int: WorkerHandle] = [:]
    var running: [String: Running] = [:]
    /// Each pool's own settings, as stored in its function record.
    var poolSettings: [String: PoolSettings] = [:]
    var pace: [String: ModelPace] = [:]
    var waiters: [String: [Int: CheckedContinuation<TaskRecord?, Never>]] = [:]
    var startFailures: [String: Int] = [:]
    var reportedState: [String: ModelStatus] = [:]
    var observer: ModelStateObserver?
    var finalObserver: TaskFinalObserver?
    /// Workers lent to calls that are not tasks, and the calls waiting for one (see ``lease(model:user:)``).
    var leases: [String: LeaseState] = [:]
    let metrics = SchedulerMetrics()
    var metricsSeen = SchedulerMetrics.Seen()
    /// Whether ``run()`` is running (for readiness checks).
    public private(set) var isRunning = false
    var outputObserver: OutputObserver?
    var nextWaiterID = 1
    /// Unfinished tasks per user and the bytes their requests take, for the per-user limits.
    var activeByUser: [String: ActiveUsage] = [:]
    var jobs: AsyncStream<Job>.Continuation?
    var shuttingDown = false
    /// The progress call under way to the worker of each running task; polls that come meanwhile share it.
    var progressPolls: [String: Task<A1111.Progress?, Never>] = [:]
    /// The last answers of those calls, read without entering the actor while they are fresh.
    let progressBoard = ProgressBoard(freshness: .milliseconds(100))
    /// Task changes held in memory because the disk is full (see ``persist(_:_:)``).
    var changesWaitingForDisk = 0

    public init(
        configuration: SchedulerConfiguration, inventory: GPUInventory, tasks: TaskStore, catalog: CatalogStore,
        objects: ObjectStore, client: WorkerClient, logger: Logger
    ) {
        self.configuration = configuration
        self.inventory = inventory
        self.tasks = tasks
        self.catalog = catalog
        self.objects = objects
        self.client = client
        self.logger = logger
        self.planner = DispatchPlanner(
            inventory: inventory, maxInstances: configuration.maxInstances, defaultPolicy: configuration.policy(PoolSettings()),
            fairnessWait: configuration.fairnessWaitSeconds, priorityStep: configuration.prioritySeconds
        )
    }

    /// Sets who hears about model state changes.
    public func setObserver(_ observer: @escaping ModelStateObserver) {
        self.observer = observer
    }

    /// Sets who hears about tasks that reach a final state.
    public func setFinalObserver(_ observer: @escaping TaskFinalObserver) {
        self.finalObserver = observer
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
        for function in try await catalog.functions() { apply(function.settings, to: function.model) }
        try await recover()
        let (stream, continuation) = AsyncStream.makeStream(of: Job.self)
        jobs = continuation
        logger.info(
            "scheduler started",
            metadata: [
                "gpus": "\(inventory.gpus.map { "\($0.index):\($0.name):\($0.memoryMiB)MiB" })", "source": "\(inventory.source.rawValue)",
                "maxInstances": "\(configuration.maxInstances)",
            ]
        )
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
                case .execute(let taskID, let worker):
                    group.addTask { await self.execute(taskID: taskID, on: worker) }
                }
            }
            beginShutdown()
            group.cancelAll()
        }
        logger.info("scheduler stopped")
    }

    func beginShutdown() {
        shuttingDown = true
        failWaitingLeases(reason: "sdbox is shutting down")
        jobs?.finish()
        for handle in handles.values { handle.process.stop() }
    }

    /// Puts unfinished tasks of a previous run back in their queues in their original order; a task that
    /// was running counts that as an attempt, and fails if it has had them all. On a full disk this waits
    /// for space (the scheduler is not ready meanwhile; the API answers).
    func recover() async throws {
        let active = try await tasks.activeTasks()
        for task in active {
            var task = task
            if task.state == .running {
                let attempts = task.attempts
                do {
                    if attempts >= configuration.maxAttempts {
                        task = try await persist(task.id) {
                            $0.state = .failed
                            $0.finishedAt = Date()
                            $0.error = "sdbox stopped while the task was running, \(attempts) attempts"
                        }
                        tellFinalObserver(task)
                        continue
                    }
                    task = try await persist(task.id) { $0.state = .queued }
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    // One task that cannot be written must not keep every other from running.
                    logger.error("could not recover task", metadata: ["task": "\(task.id)", "error": "\(ErrorSummary(error))"])
                    continue
                }
            }
            enqueue(task)
        }
        if !active.isEmpty { logger.info("recovered unfinished tasks", metadata: ["count": "\(active.count)"]) }
    }

    // MARK: Submitting, waiting, cancelling

    /// Counts a task of `user` whose request takes `bytes` in the user's usage, unless the user already
    /// has `maxTasks` unfinished tasks or this one would take the user past `maxBytes`: then nothing is
    /// counted and the usage is returned. Checked and counted in one step, so concurrent submissions
    /// cannot all pass; a task admitted is then stored and ``submit(_:)``ted, or ``withdraw(user:bytes:)``n.
    public func admit(user: String, bytes: Int, maxTasks: Int, maxBytes: Int) -> ActiveUsage? {
        let usage = activeByUser[user] ?? ActiveUsage()
        guard usage.tasks < maxTasks, usage.bytes + bytes <= maxBytes else { return usage }
        activeByUser[user, default: ActiveUsage()].add(bytes: bytes)
        return nil
    }

    /// Takes back what ``admit(user:bytes:maxTasks:maxBytes:)`` counted for a task that was not stored.
    public func withdraw(user: String, bytes: Int) {
        activeByUser[user]?.remove(bytes: bytes)
        if activeByUser[user]?.tasks ?? 0 <= 0 { activeByUser[user] = nil }
    }

    /// Queues a task that is already persisted and was admitted.
    public func submit(_ task: TaskRecord) {
        requeue(task)
        dispatch()
    }

    /// Puts a persisted task a previous run left unfinished in its model's queue, and counts it.
    func enqueue(_ task: TaskRecord) {
        requeue(task)
        activeByUser[task.user, default: ActiveUsage()].add(bytes: task.request.storageSize)
    }

    /// Puts a task back in its model's queue, in its place by its original time.
    func requeue(_ task: TaskRecord) {
        planner.enqueue(
            task.id, model: task.model, user: task.user, priority: task.priority,
            crossUserPriority: task.priorityAcrossUsers ?? false, enqueuedAt: task.createdAt
        )
    }

    /// Waits until a task is final and returns it; `nil` if it does not exist. With a `timeout`, returns
    /// the task as it stands when the time is up.
    public func waitUntilFinal(_ id: String, timeout: Duration? = nil) async -> TaskRecord? {
        let waiterID = nextWaiterID
        nextWaiterID += 1
        return await withCheckedContinuation { continuation in
            waiters[id, default: [:]][waiterID] = continuation
            Task { await self.resumeIfFinal(id, waiterID: waiterID) }
            if let timeout {
                Task {
                    try? await Task.sleep(for: timeout)
                    await self.resumeIfFinal(id, waiterID: waiterID, evenIfNotFinal: true)
                }
            }
        }
    }

    /// Resumes one waiter if its task is already final (it finished before the waiter was registered).
    func resumeIfFinal(_ id: String, waiterID: Int, evenIfNotFinal: Bool = false) async {
        let task = try? await tasks.get(id)
        if evenIfNotFinal || task == nil || task?.state.isFinal == true, let waiter = waiters[id]?.removeValue(forKey: waiterID) {
            waiter.resume(returning: task)
        }
    }

    func notifyFinal(_ task: TaskRecord) {
        tellFinalObserver(task)
        guard let waiting = waiters.removeValue(forKey: task.id) else { return }
        for waiter in waiting.values { waiter.resume(returning: task) }
    }

    func tellFinalObserver(_ task: TaskRecord) {
        if let finalObserver { Task { await finalObserver(task) } }
    }

    /// Cancels a task: a queued task is cancelled at once; a running one is interrupted on its worker and
    /// becomes `cancelled` when the worker lets go of it. Returns the task as it now stands.
    public func cancel(_ id: String) async throws -> TaskRecord? {
        if planner.remove(id) {
            let task: TaskRecord
            do {
                task = try await tasks.update(id) {
                    $0.state = .cancelled
                    $0.finishedAt = Date()
                }
            } catch {
                // Not cancelled after all (the disk is full, say): the task keeps its place.
                if let queued = try? await tasks.get(id), queued.state == .queued {
                    requeue(queued)
                    dispatch()
                }
                throw error
            }
            taskEnded(task)
            return task
        }
        if var run = running[id], let handle = handles[run.workerID] {
            run.cancelRequested = true
            running[id] = run
            await client.interrupt(port: handle.process.port)
        }
        return try await tasks.get(id)
    }

    /// Where a task stands: its queue position and estimated time, or its worker's latest progress report
    /// (about ``ProgressBoard/freshness`` old, so that clients polling a task in their thousands cost its
    /// worker a few calls a second, and neither queue on the scheduler nor wait for the worker).
    public nonisolated func progress(of id: String) async -> TaskProgress {
        guard let latest = progressBoard.latest(of: id) else { return await currentProgress(of: id) }
        if latest.refresh { Task { await self.refreshProgress(of: id) } }
        return .running(latest.report)
    }

    /// Asks the worker of running task `id` for its progress again (the answer goes on the board).
    func refreshProgress(of id: String) async {
        guard let run = running[id], let process = handles[run.workerID]?.process else {
            progressBoard.remove(id)
            return
        }
        _ = await workerProgress(of: id, on: process)
    }

    func currentProgress(of id: String) async -> TaskProgress {
        if let (model, position) = planner.position(of: id) {
            return .queued(position: position, eta: estimatedWait(model: model, position: position))
        }
        guard let run = running[id] else { return .notActive }
        guard let process = handles[run.workerID]?.process else { return .running(nil) }
        let report = await workerProgress(of: id, on: process)
        // A worker's progress is its current job's: if the task ended while the worker answered, the
        // answer may be about the worker's next task.
        guard running[id]?.workerID == run.workerID else { return .notActive }
        return .running(report)
    }

    /// The progress the worker of running task `id` reports: one call at a time, its answer posted on the board.
    func workerProgress(of id: String, on worker: WorkerProcess) async -> A1111.Progress? {
        if let poll = progressPolls[id] { return await poll.value }
        metrics.workerProgressCalled(model: worker.model)
        let (client, port) = (self.client, worker.port)
        let poll = Task { await client.progress(port: port) }
        progressPolls[id] = poll
        let report = await poll.value
        if progressPolls[id] == poll {
            progressPolls[id] = nil
            if running[id] != nil { progressBoard.post(report, of: id) }
        }
        return report
    }

    /// Seconds until the task at `position` in `model`'s queue is done, from the model's recent pace.
    func estimatedWait(model: String, position: Int) -> Double? {
        guard let pace = pace[model], let perTask = pace.taskSeconds else { return nil }
        let workers = planner.liveWorkers(model: model)
        let parallel = max(1, workers.count)
        let coldStart = workers.isEmpty ? (pace.loadSeconds ?? 0) : 0
        return coldStart + Double((position + parallel - 1) / parallel + (workers.contains { $0.state == .busy } ? 1 : 0)) * perTask
    }

    /// The ids of running tasks (not of leased workers' calls).
    public func runningTasks() -> [String] {
        Array(running.keys)
    }

    /// Every live worker.
    public func workers() -> [WorkerInfo] {
        planner.workers.values.compactMap { worker -> WorkerInfo? in
            guard let handle = handles[worker.id] else { return nil }
            return WorkerInfo(
                id: worker.id, model: worker.model, function: FunctionRecord.name(forModel: worker.model), gpu: worker.gpu,
                gpuMemoryMiB: worker.memoryMiB, port: handle.process.port, pid: handle.process.processID, state: worker.state,
                since: handle.since, tasksServed: handle.tasksServed, taskId: worker.taskID.flatMap { leases[$0] == nil ? $0 : nil }
            )
        }.sorted { $0.id < $1.id }
    }

    /// Every GPU with the memory planned for its workers.
    public func gpus() -> [GPUUsage] {
        let reserved = planner.reservedMemory
        return inventory.gpus.map { gpu in
            GPUUsage(
                index: gpu.index, name: gpu.name, memoryMiB: gpu.memoryMiB, plannedMiB: reserved[gpu.index, default: 0],
                workers: planner.workers.values.filter { $0.gpu == gpu.index }.count
            )
        }
    }

    /// Queued tasks per model.
    public func queueDepths() -> [String: Int] { planner.queueDepths }

    // MARK: Pools

    /// A pool's settings with every field decided.
    public func settings(ofPool model: String) -> PoolSettings {
        configuration.effectiveSettings(poolSettings[model] ?? PoolSettings())
    }

    /// Checks a pool's new settings, persists them in its function record and applies them.
    public func configurePool(model: String, settings: PoolSettings) async throws -> FunctionRecord {
        let effective = configuration.effectiveSettings(settings)
        if let profile = effective.profile, configuration.profiles[profile] == nil {
            throw PoolSettingsError("unknown launch profile '\(profile)'; known: \(configuration.profiles.keys.sorted().joined(separator: ", "))")
        }
        let record = try await catalog.updateFunction(model: model) { $0.settings = settings }
        apply(settings, to: model)
        dispatch()
        return record
    }


    /// Whether a model has tasks (or passthrough calls) queued or running.
    public func hasWork(model: String) -> Bool {
        planner.queuedCount(model: model) > 0 || running.values.contains { planner.workers[$0.workerID]?.model == model }
            || leasedWorkers(model: model) > 0
    }

    /// Deletes a pool: its queued tasks fail with `reason`, idle workers stop, and its function record
    /// goes. Busy workers stop when their task ends, or at once with `stopRunning` (their tasks then fail
    /// with `reason` too). A later task for the model starts a new pool.
    public func removePool(model: String, reason: String, stopRunning: Bool = false) async throws {
        try await catalog.removeFunction(model: model)
        poolSettings[model] = nil
        planner.policies[model] = nil
        await failQueued(planner.removeAll(model: model), reason: reason)
        if stopRunning {
            for (id, run) in running where planner.workers[run.workerID]?.model == model {
                running[id]?.abortReason = reason
            }
        }
        for worker in planner.liveWorkers(model: model) {
            planner.markStopping(worker.id)
            if worker.state != .busy || stopRunning { handles[worker.id]?.process.stop() }
        }
        dispatch()
    }

    func apply(_ settings: PoolSettings, to model: String) {
        poolSettings[model] = settings
        let policy = configuration.policy(settings)
        planner.policies[model] = policy == planner.defaultPolicy ? nil : policy
    }

    // MARK: Dispatching

    /// Asks the planner what to do now and does it.
    func dispatch() {
        guard !shuttingDown, jobs != nil else { return }
        for decision in planner.plan(now: Date()) {
            switch decision {
            case .assign(let taskID, let workerID):
                guard let handle = handles[workerID] else { continue }
                handles[workerID]?.since = Date()
                if grantLease(taskID, workerID: workerID, port: handle.process.port, model: handle.process.model) { continue }
                running[taskID] = Running(workerID: workerID)
                jobs?.yield(.execute(taskID: taskID, worker: handle.process))
            case .start(let workerID, let model, let gpu):
                startWorker(workerID, for: model, gpu: gpu)
            case .stop(let workerID, let reason):
                logger.info("stopping worker", metadata: ["worker": "\(workerID)", "reason": "\(reason.rawValue)"])
                metrics.workerStopped(reason: reason)
                handles[workerID]?.since = Date()
                handles[workerID]?.process.stop()
            case .reject(let taskIDs, let model, let reason):
                logger.error("tasks cannot be placed", metadata: ["model": "\(model)", "reason": "\(reason)"])
                Task { await self.failQueued(taskIDs, reason: reason) }
            }
        }
        reportModelStates()
        metrics.record(planner, inventory: inventory, seen: &metricsSeen)
    }

    func startWorker(_ id: Int, for model: String, gpu: Int?) {
        let settings = settings(ofPool: model)
        let profileName = settings.profile ?? configuration.defaultProfile
        guard let template = configuration.profiles[profileName], let port = FreePort.allocate() else {
            logger.error("cannot start a worker", metadata: ["model": "\(model)", "profile": "\(profileName)"])
            planner.workerGone(id)
            return
        }
        let checkpoint = "\(configuration.modelsDirectory)/\(ModelType.stableDiffusion.folderName)/\(model)"
        let values = WorkerLaunchProfile.placeholders(
            port: port, checkpoint: checkpoint, modelsDirectory: configuration.modelsDirectory,
            dataDirectory: configuration.dataDirectory, executablePath: configuration.executablePath
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
        handles[id] = WorkerHandle(process: process, since: Date(), startedAt: .now)
        metrics.workerStarted(model: model)
        logger.info("starting worker", metadata: ["worker": "\(id)", "model": "\(model)", "gpu": "\(gpu.map(String.init) ?? "none")", "profile": "\(profileName)"])
        jobs?.yield(.supervise(process))
    }

    /// Tells the observer about models whose state changed.
    func reportModelStates() {
        var states: [String: ModelStatus] = [:]
        for worker in planner.workers.values where worker.state != .stopping {
            let status: ModelStatus = worker.state == .starting ? .loading : .loaded
            if states[worker.model] != .loaded { states[worker.model] = status }
        }
        for model in Set(reportedState.keys).union(states.keys) {
            let status = states[model] ?? .unloaded
            guard reportedState[model] != status else { continue }
            reportedState[model] = status
            notify(model, status, nil)
        }
    }

    func notify(_ model: String, _ status: ModelStatus, _ error: String?) {
        guard let observer else { return }
        Task { await observer(model, status, error) }
    }

    // MARK: Workers

    func supervise(_ worker: WorkerProcess) async {
        let exit = await worker.run(
            probe: { [client] in await client.ping(port: worker.port) },
            onReady: { await self.workerReady(worker.id) },
            logger: logger
        )
        await workerExited(worker, exit)
    }

    func workerReady(_ id: Int) {
        guard let handle = handles[id] else { return }
        planner.workerReady(id, now: Date())
        handles[id]?.since = Date()
        startFailures[handle.process.model] = nil
        let loadSeconds = handle.startedAt.duration(to: .now).seconds
        pace[handle.process.model, default: ModelPace()].recordLoad(seconds: loadSeconds)
        logger.info("worker ready", metadata: ["worker": "\(id)", "model": "\(handle.process.model)", "loadSeconds": "\(loadSeconds)"])
        dispatch()
    }

    func workerExited(_ worker: WorkerProcess, _ exit: WorkerExit) async {
        let state = planner.workers[worker.id]?.state
        planner.workerGone(worker.id)
        handles[worker.id] = nil
        let expected = state == .stopping || shuttingDown
        let output = exit.lastOutput.suffix(5).joined(separator: " | ")
        if expected {
            logger.info("worker stopped", metadata: ["worker": "\(worker.id)", "status": "\(exit.status)"])
        } else {
            logger.warning("worker exited", metadata: ["worker": "\(worker.id)", "model": "\(worker.model)", "status": "\(exit.status)", "output": "\(output)"])
        }
        if !exit.becameReady && !expected {
            let failures = startFailures[worker.model, default: 0] + 1
            startFailures[worker.model] = failures
            if failures >= configuration.maxStartFailures {
                startFailures[worker.model] = nil
                let reason = "the worker for \(worker.model) failed to start \(failures) times (\(exit.status)): \(output)"
                await failQueued(planner.removeAll(model: worker.model), reason: reason)
                dispatch()
                reportedState[worker.model] = .failed
                notify(worker.model, .failed, reason)
                return
            }
        }
        dispatch()
    }

    // MARK: Running tasks

    func isCancelRequested(_ id: String) -> Bool {
        running[id]?.cancelRequested ?? false
    }

    /// Runs one task on one worker and records the outcome.
    func execute(taskID: String, on worker: WorkerProcess) async {
        let task: TaskRecord
        do {
            task = try await persist(taskID) {
                $0.state = .running
                $0.attempts += 1
                $0.startedAt = Date()
            }
        } catch {
            logger.error("task could not start", metadata: ["task": "\(taskID)", "error": "\(error)"])
            taskLeftWorker(taskID, worker: worker, healthy: true)
            return
        }
        if isCancelRequested(taskID) {
            await finish(taskID, state: .cancelled, error: nil)
            taskLeftWorker(taskID, worker: worker, healthy: true)
            return
        }
        logger.info("task started", metadata: ["task": "\(taskID)", "model": "\(task.model)", "worker": "\(worker.id)", "attempt": "\(task.attempts)"])
        let call: WorkerCall
        do {
            call = try WorkerCall(task: task)
        } catch {
            await finish(taskID, state: .failed, error: "the task's request cannot be sent: \(error)")
            taskLeftWorker(taskID, worker: worker, healthy: true)
            return
        }
        let started = ContinuousClock.now
        let timeout = Int64(settings(ofPool: task.model).taskTimeoutSeconds ?? 3600)
        let answer: WorkerResponse
        let watchdog = Task { await self.watch(worker) }
        defer { watchdog.cancel() }
        do throws(WorkerCallError) {
            answer = try await worker.whileAlive { () async throws(WorkerCallError) -> WorkerResponse in
                try await self.client.send(call, port: worker.port, timeout: .seconds(timeout))
            }
            // A generation must succeed; a passthrough call's answer is its result, whatever its status.
            if task.kind != .passthrough && !answer.isSuccess { throw .rejected(status: answer.status, detail: answer.detail) }
        } catch .rejected(let status, let detail) {
            let cancelled = isCancelRequested(taskID)
            await finish(
                taskID, state: cancelled ? .cancelled : .failed,
                error: running[taskID]?.abortReason ?? (cancelled ? nil : "worker error (\(status)): \(detail)")
            )
            taskLeftWorker(taskID, worker: worker, healthy: true)
            return
        } catch {
            await workerLost(task, worker: worker, error: error)
            return
        }
        if let reason = running[taskID]?.abortReason {
            await finish(taskID, state: .failed, error: reason)
            taskLeftWorker(taskID, worker: worker, healthy: true)
            return
        }
        let cancelled = isCancelRequested(taskID)
        if !cancelled && task.kind != .passthrough {
            pace[task.model, default: ModelPace()].recordTask(seconds: started.duration(to: .now).seconds)
        }
        do {
            let result = task.kind == .passthrough
                ? try await PassthroughResult.store(answer, of: task, in: objects) : try await store(answer.body, of: task)
            let failure = answer.isSuccess ? nil : "worker answered \(answer.status): \(answer.detail)"
            await finish(taskID, state: cancelled ? .cancelled : failure == nil ? .succeeded : .failed, error: failure, result: result)
        } catch {
            await finish(taskID, state: .failed, error: "could not store the result: \(error)")
        }
        taskLeftWorker(taskID, worker: worker, healthy: true)
    }

    /// Pings a busy worker every `livenessSeconds`; one that fails `livenessFailures` pings in a row has
    /// stopped answering and is killed, so its task is retried elsewhere rather than waiting for the task
    /// timeout.
    nonisolated func watch(_ worker: WorkerProcess) async {
        var failures = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(configuration.livenessSeconds))
            if Task.isCancelled { return }
            if await client.ping(port: worker.port, timeout: .milliseconds(Int64(configuration.livenessSeconds * 1000))) {
                failures = 0
                continue
            }
            failures += 1
            if failures >= configuration.livenessFailures {
                logger.warning("worker stopped answering; killing it", metadata: ["worker": "\(worker.id)", "model": "\(worker.model)"])
                worker.kill()
                return
            }
        }
    }

    /// The worker died or stopped answering under a task: queue the task again, or fail it when it has
    /// had all its attempts. During shutdown the task is left `running`, to be re-queued at next start.
    func workerLost(_ task: TaskRecord, worker: WorkerProcess, error: WorkerCallError) async {
        let cancelRequested = isCancelRequested(task.id)
        let abortReason = running[task.id]?.abortReason
        taskLeftWorker(task.id, worker: worker, healthy: false)
        if shuttingDown || Task.isCancelled { return }
        if let abortReason {
            await finish(task.id, state: .failed, error: abortReason)
        } else if cancelRequested {
            await finish(task.id, state: .cancelled, error: nil)
        } else if task.attempts >= configuration.maxAttempts {
            await finish(task.id, state: .failed, error: "the worker failed \(task.attempts) times; last: \(error)")
        } else {
            logger.warning("worker lost a task; queuing it again", metadata: ["task": "\(task.id)", "error": "\(error)"])
            do {
                let requeued = try await persist(task.id) { $0.state = .queued }
                requeue(requeued)
            } catch {
                logger.error("could not re-queue task", metadata: ["task": "\(task.id)", "error": "\(error)"])
            }
        }
        dispatch()
    }

    /// Frees the worker of a task; a worker that misbehaved, or whose pool is going, is stopped.
    func taskLeftWorker(_ id: String, worker: WorkerProcess, healthy: Bool) {
        running[id] = nil
        progressPolls[id] = nil
        progressBoard.remove(id)
        workerFreed(worker.id, healthy: healthy)
    }

    /// A worker's task or lease ended: it takes the next one, or stops if it misbehaved or must go.
    func workerFreed(_ workerID: Int, healthy: Bool) {
        if handles[workerID] != nil {
            handles[workerID]?.tasksServed += 1
            handles[workerID]?.since = Date()
            planner.taskDone(workerID: workerID, healthy: healthy, now: Date())
            if planner.workers[workerID]?.state == .stopping { handles[workerID]?.process.stop() }
        }
        dispatch()
    }

    /// Moves a task to a final state and wakes whoever waits for it. An outcome that cannot be recorded
    /// (it cannot be encoded, say) still ends the task: `failed`, with the reason and without the result.
    func finish(_ id: String, state: TaskState, error: String?, result: TaskResult? = nil) async {
        let task: TaskRecord
        do {
            task = try await persist(id) {
                $0.state = state
                $0.finishedAt = Date()
                $0.error = error
                if let result { $0.result = result }
            }
        } catch let failure {
            let reason = "the task's outcome could not be recorded: \(ErrorSummary(failure))"
            logger.error("could not record task outcome", metadata: ["task": "\(id)", "error": "\(ErrorSummary(failure))"])
            if let failed = try? await persist(id, {
                $0.state = .failed
                $0.finishedAt = Date()
                $0.error = reason
                $0.result = nil
            }) {
                task = failed
            } else if var known = try? await tasks.get(id) {
                // Not even that could be written: the task ends here all the same (its waiters are told,
                // its user's share freed); on disk it stays unfinished and runs again at the next start.
                known.state = .failed
                known.finishedAt = Date()
                known.error = reason
                task = known
            } else {
                return
            }
        }
        var metadata: Logger.Metadata = ["task": "\(id)", "model": "\(task.model)"]
        if let error = task.error { metadata["error"] = "\(error)" }
        logger.info("task \(task.state.rawValue)", metadata: metadata)
        taskEnded(task)
    }

    /// Writes a change of a task, retrying each second while the disk is full, so that an outcome is never
    /// dropped while sdbox runs; other errors, and shutdown, end the attempts.
    func persist(_ id: String, _ change: @escaping @Sendable (inout TaskRecord) throws -> Void) async throws -> TaskRecord {
        var waiting = false
        defer {
            if waiting {
                changesWaitingForDisk -= 1
                metrics.changesWaitingForDisk(changesWaitingForDisk)
            }
        }
        while true {
            do {
                let task = try await tasks.update(id, change)
                if waiting { logger.notice("disk space returned; task change recorded", metadata: ["task": "\(id)"]) }
                return task
            } catch let error as LMDBError where error.isOutOfSpace && !shuttingDown {
                if !waiting {
                    logger.error("disk full: a task change waits for space", metadata: ["task": "\(id)", "error": "\(error)"])
                    waiting = true
                    changesWaitingForDisk += 1
                    metrics.changesWaitingForDisk(changesWaitingForDisk)
                }
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Accounts for a task that reached its final state and wakes whoever waits for it.
    func taskEnded(_ task: TaskRecord) {
        metrics.taskFinished(task)
        withdraw(user: task.user, bytes: task.request.storageSize)
        notifyFinal(task)
    }

    /// Saves a generation's or extras' answer: images into the object store, `info` parsed from its JSON
    /// string. When an image cannot be saved (disk full), the ones already saved are removed, so nothing is
    /// half written. The output observer then hears of the saved images.
    func store(_ answer: Data, of task: TaskRecord) async throws -> TaskResult {
        let output = try WorkerAnswer(kind: task.kind, answer: answer, request: task.request)
        var keys: [String] = []
        do {
            for (index, image) in output.images.enumerated() {
                guard let data = Data(base64Encoded: image, options: .ignoreUnknownCharacters) else {
                    throw WorkerCallError.rejected(status: 200, detail: "image \(index + 1) is not valid base64")
                }
                let key = ObjectStore.imageKey(user: task.user, taskID: task.id, index: index + 1)
                try await objects.put(data, key: key)
                keys.append(key)
            }
        } catch {
            for key in keys { try? await objects.delete(key) }
            throw error
        }
        outputObserver?(task, keys)
        return TaskResult(images: keys, info: output.info, parameters: output.parameters)
    }

    /// Sets who hears about images saved for a task (e.g. to make their thumbnails off the request path).
    public func setOutputObserver(_ observer: @escaping OutputObserver) {
        outputObserver = observer
    }
}

/// Told, without waiting, about the object keys of the images just saved for a task.
public typealias OutputObserver = @Sendable (_ task: TaskRecord, _ imageKeys: [String]) -> Void

/// Pool settings that cannot be applied.
public struct PoolSettingsError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A user's unfinished (queued or running) tasks, and the bytes their requests take in storage.
public struct ActiveUsage: Sendable, Equatable {
    public var tasks = 0
    public var bytes = 0

    public init() {}

    mutating func add(bytes size: Int) {
        tasks += 1
        bytes += size
    }

    mutating func remove(bytes size: Int) {
        tasks -= 1
        bytes -= size
    }
}

/// A model's recent pace: how long its workers take to load and its tasks to run, as moving averages.
struct ModelPace: Sendable {
    var taskSeconds: Double?
    var loadSeconds: Double?

    mutating func recordTask(seconds: Double) { taskSeconds = Self.average(taskSeconds, seconds) }
    mutating func recordLoad(seconds: Double) { loadSeconds = Self.average(loadSeconds, seconds) }

    static func average(_ old: Double?, _ new: Double) -> Double {
        old.map { $0 * 0.8 + new * 0.2 } ?? new
    }
}

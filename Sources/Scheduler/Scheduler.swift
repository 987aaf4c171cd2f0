import AsyncHTTPClient
import DequeModule
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
    public var port: Int
    public var pid: Int32?
    public var state: WorkerState
    public var since: Date
    public var tasksServed: Int
    /// The task it is running, when busy.
    public var taskId: String?
}

/// Where a task stands, as reported by ``Scheduler/progress(of:)``.
public enum TaskProgress: Sendable {
    /// Waiting for a worker; `position` is 1 for the next task of its model to run.
    case queued(position: Int)
    /// Running; the worker's own progress report, when it gave one.
    case running(A1111.Progress?)
    /// Not in the scheduler: finished, or unknown.
    case notActive
}

/// The scheduler: keeps a queue per model, starts one worker process per model on demand within a global
/// instance cap, hands each queued task to an idle worker of its model, and records every outcome.
///
/// Nothing is lost: a task is persisted before it is submitted, a task whose worker dies is queued again
/// (up to ``SchedulerConfiguration/maxAttempts`` tries), and at start the scheduler re-queues the tasks
/// a previous sdbox left queued or running.
///
/// When every instance is taken, an idle worker of a model with nothing queued is stopped to make room
/// for a model that has tasks waiting; the model whose oldest task has waited longest goes first.
public actor Scheduler: Service {
    let configuration: SchedulerConfiguration
    let tasks: TaskStore
    let objects: ObjectStore
    let client: WorkerClient
    let logger: Logger

    struct Queued {
        let id: String
        let createdAt: Date
    }

    struct Slot {
        let process: WorkerProcess
        var state: WorkerState
        var since: Date
        var lastUsed: Date
        var tasksServed = 0
        var taskID: String?
    }

    struct Running {
        let workerID: Int
        var cancelRequested = false
    }

    enum Job: Sendable {
        case supervise(WorkerProcess)
        case execute(taskID: String, worker: WorkerProcess)
    }

    var queues: [String: Deque<Queued>] = [:]
    var slots: [Int: Slot] = [:]
    var running: [String: Running] = [:]
    var waiters: [String: [Int: CheckedContinuation<TaskRecord?, Never>]] = [:]
    var startFailures: [String: Int] = [:]
    var nextWorkerID = 1
    var nextWaiterID = 1
    var jobs: AsyncStream<Job>.Continuation?
    var shuttingDown = false

    public init(configuration: SchedulerConfiguration, tasks: TaskStore, objects: ObjectStore, client: WorkerClient, logger: Logger) {
        self.configuration = configuration
        self.tasks = tasks
        self.objects = objects
        self.client = client
        self.logger = logger
    }

    // MARK: Service

    /// Re-queues what a previous run left unfinished, then runs workers and tasks until graceful shutdown.
    public func run() async throws {
        for directory in [configuration.runDirectory, configuration.logDirectory] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let reaped = WorkerReaper.reap(in: configuration.runDirectory)
        if !reaped.isEmpty { logger.warning("killed workers left by a previous run", metadata: ["pids": "\(reaped)"]) }
        try await recover()
        let (stream, continuation) = AsyncStream.makeStream(of: Job.self)
        jobs = continuation
        dispatch()
        await withDiscardingTaskGroup { group in
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
        jobs?.finish()
        for slot in slots.values { slot.process.stop() }
    }

    /// Puts unfinished tasks of a previous run back in the queue, or fails those out of attempts.
    func recover() async throws {
        let active = try await tasks.activeTasks()
        for task in active {
            var task = task
            if task.state == .running {
                let attempts = task.attempts
                if attempts >= configuration.maxAttempts {
                    task = try await tasks.update(task.id) {
                        $0.state = .failed
                        $0.finishedAt = Date()
                        $0.error = "sdbox stopped while the task was running, \(attempts) attempts"
                    }
                    continue
                }
                task = try await tasks.update(task.id) { $0.state = .queued }
            }
            enqueue(task)
        }
        if !active.isEmpty { logger.info("recovered unfinished tasks", metadata: ["count": "\(active.count)"]) }
    }

    // MARK: Submitting, waiting, cancelling

    /// Queues a task that is already persisted.
    public func submit(_ task: TaskRecord) {
        enqueue(task)
        dispatch()
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
        guard let waiting = waiters.removeValue(forKey: task.id) else { return }
        for waiter in waiting.values { waiter.resume(returning: task) }
    }

    /// Cancels a task: a queued task is cancelled at once; a running one is interrupted on its worker and
    /// becomes `cancelled` when the worker lets go of it. Returns the task as it now stands.
    public func cancel(_ id: String) async throws -> TaskRecord? {
        if let model = queues.first(where: { $0.value.contains { $0.id == id } })?.key {
            queues[model]?.removeAll { $0.id == id }
            let task = try await tasks.update(id) {
                $0.state = .cancelled
                $0.finishedAt = Date()
            }
            notifyFinal(task)
            return task
        }
        if var run = running[id], let slot = slots[run.workerID] {
            run.cancelRequested = true
            running[id] = run
            await client.interrupt(port: slot.process.port)
        }
        return try await tasks.get(id)
    }

    /// Where a task stands; for a running task, its worker's progress report.
    public func progress(of id: String) async -> TaskProgress {
        if let (model, queue) = queues.first(where: { $0.value.contains { $0.id == id } }) {
            _ = model
            return .queued(position: (queue.firstIndex { $0.id == id } ?? 0) + 1)
        }
        guard let run = running[id] else { return .notActive }
        guard let port = slots[run.workerID]?.process.port else { return .running(nil) }
        return .running(await client.progress(port: port))
    }

    /// The ids of running tasks of `user`, most recently started last.
    public func runningTasks() -> [String] {
        Array(running.keys)
    }

    /// Every live worker.
    public func workers() -> [WorkerInfo] {
        slots.values.map { slot in
            WorkerInfo(
                id: slot.process.id, model: slot.process.model, port: slot.process.port, pid: slot.process.processID,
                state: slot.state, since: slot.since, tasksServed: slot.tasksServed, taskId: slot.taskID
            )
        }.sorted { $0.id < $1.id }
    }

    // MARK: Dispatching

    func enqueue(_ task: TaskRecord) {
        queues[task.model, default: []].append(Queued(id: task.id, createdAt: task.createdAt))
    }

    /// Hands queued tasks to idle workers, starts workers for models that have none, and makes room
    /// under the instance cap by stopping idle workers of models with nothing queued.
    func dispatch() {
        guard !shuttingDown, let jobs else { return }
        for (workerID, slot) in slots where slot.state == .ready {
            guard let next = queues[slot.process.model]?.popFirst() else { continue }
            slots[workerID]?.state = .busy
            slots[workerID]?.taskID = next.id
            slots[workerID]?.lastUsed = Date()
            running[next.id] = Running(workerID: workerID)
            jobs.yield(.execute(taskID: next.id, worker: slot.process))
        }
        let waiting = queues.filter { !$0.value.isEmpty }
            .sorted { $0.value.first!.createdAt < $1.value.first!.createdAt }
            .map(\.key)
        for model in waiting where !slots.values.contains(where: { $0.process.model == model && $0.state != .stopping }) {
            if slots.count < configuration.maxInstances {
                startWorker(for: model)
            } else if let victim = slots.filter({ $0.value.state == .ready && queues[$0.value.process.model, default: []].isEmpty })
                .min(by: { $0.value.lastUsed < $1.value.lastUsed })
            {
                logger.info("stopping idle worker to make room", metadata: ["worker": "\(victim.key)", "model": "\(victim.value.process.model)", "for": "\(model)"])
                slots[victim.key]?.state = .stopping
                victim.value.process.stop()
            } else {
                break
            }
        }
    }

    func startWorker(for model: String) {
        guard let port = FreePort.allocate() else {
            logger.error("no free port for a worker")
            return
        }
        let id = nextWorkerID
        nextWorkerID += 1
        let checkpoint = "\(configuration.modelsDirectory)/\(ModelType.stableDiffusion.folderName)/\(model)"
        let command = configuration.launch.resolvedCommand([
            "port": "\(port)", "checkpoint": checkpoint, "checkpoint_name": model,
            "models_dir": configuration.modelsDirectory, "data_dir": configuration.dataDirectory,
            "sdbox": configuration.executablePath, "sdbox_pid": "\(getpid())",
        ])
        let safeName = model.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }
        let process = WorkerProcess(
            id: id, model: model, port: port, command: command, profile: configuration.launch,
            logPath: "\(configuration.logDirectory)/worker-\(id)-\(String(safeName)).log",
            runDirectory: configuration.runDirectory
        )
        let now = Date()
        slots[id] = Slot(process: process, state: .starting, since: now, lastUsed: now)
        jobs?.yield(.supervise(process))
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
        guard slots[id]?.state == .starting else { return }
        slots[id]?.state = .ready
        slots[id]?.since = Date()
        if let model = slots[id]?.process.model { startFailures[model] = nil }
        logger.info("worker ready", metadata: ["worker": "\(id)"])
        dispatch()
    }

    func workerExited(_ worker: WorkerProcess, _ exit: WorkerExit) async {
        let slot = slots.removeValue(forKey: worker.id)
        let expected = slot?.state == .stopping || shuttingDown
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
                let queued = queues.removeValue(forKey: worker.model) ?? []
                let reason = "the worker for \(worker.model) failed to start \(failures) times (\(exit.status)): \(output)"
                for entry in queued {
                    await finish(entry.id, state: .failed, error: reason)
                }
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
            task = try await tasks.update(taskID) {
                $0.state = .running
                $0.attempts += 1
                $0.startedAt = Date()
            }
        } catch {
            logger.error("task could not start", metadata: ["task": "\(taskID)", "error": "\(error)"])
            taskLeftWorker(taskID, worker: worker, workerHealthy: true)
            return
        }
        if isCancelRequested(taskID) {
            await finish(taskID, state: .cancelled, error: nil)
            taskLeftWorker(taskID, worker: worker, workerHealthy: true)
            return
        }
        logger.info("task started", metadata: ["task": "\(taskID)", "model": "\(task.model)", "worker": "\(worker.id)", "attempt": "\(task.attempts)"])
        let answer: Data
        do throws(WorkerCallError) {
            answer = try await worker.whileAlive { () async throws(WorkerCallError) -> Data in
                try await self.client.call(
                    port: worker.port, method: .POST, path: task.kind.workerPath, body: try? task.request.encoded(),
                    timeout: .seconds(self.configuration.taskTimeoutSeconds)
                )
            }
        } catch .rejected(let status, let detail) {
            let cancelled = isCancelRequested(taskID)
            await finish(taskID, state: cancelled ? .cancelled : .failed, error: cancelled ? nil : "worker error (\(status)): \(detail)")
            taskLeftWorker(taskID, worker: worker, workerHealthy: true)
            return
        } catch {
            await workerLost(task, worker: worker, error: error)
            return
        }
        let cancelled = isCancelRequested(taskID)
        do {
            let result = try await store(answer, of: task)
            await finish(taskID, state: cancelled ? .cancelled : .succeeded, error: nil, result: result)
        } catch {
            await finish(taskID, state: .failed, error: "could not store the result: \(error)")
        }
        taskLeftWorker(taskID, worker: worker, workerHealthy: true)
    }

    /// The worker died or stopped answering under a task: queue the task again, or fail it when it has
    /// had all its attempts. During shutdown the task is left `running`, to be re-queued at next start.
    func workerLost(_ task: TaskRecord, worker: WorkerProcess, error: WorkerCallError) async {
        taskLeftWorker(task.id, worker: worker, workerHealthy: false)
        if shuttingDown || Task.isCancelled { return }
        if isCancelRequested(task.id) || running[task.id]?.cancelRequested == true {
            await finish(task.id, state: .cancelled, error: nil)
        } else if task.attempts >= configuration.maxAttempts {
            await finish(task.id, state: .failed, error: "the worker failed \(task.attempts) times; last: \(error)")
        } else {
            logger.warning("worker lost a task; queuing it again", metadata: ["task": "\(task.id)", "error": "\(error)"])
            do {
                let requeued = try await tasks.update(task.id) { $0.state = .queued }
                queues[requeued.model, default: []].prepend(Queued(id: requeued.id, createdAt: requeued.createdAt))
            } catch {
                logger.error("could not re-queue task", metadata: ["task": "\(task.id)", "error": "\(error)"])
            }
        }
        dispatch()
    }

    /// Frees the worker of a task; a worker that misbehaved is stopped (and restarted on demand).
    func taskLeftWorker(_ id: String, worker: WorkerProcess, workerHealthy: Bool) {
        running[id] = nil
        if slots[worker.id] != nil {
            slots[worker.id]?.taskID = nil
            slots[worker.id]?.tasksServed += 1
            slots[worker.id]?.lastUsed = Date()
            if workerHealthy && slots[worker.id]?.state == .busy {
                slots[worker.id]?.state = .ready
            } else if !workerHealthy {
                slots[worker.id]?.state = .stopping
                worker.stop()
            }
        }
        dispatch()
    }

    /// Moves a task to a final state and wakes whoever waits for it.
    func finish(_ id: String, state: TaskState, error: String?, result: TaskResult? = nil) async {
        do {
            let task = try await tasks.update(id) {
                $0.state = state
                $0.finishedAt = Date()
                $0.error = error
                if let result { $0.result = result }
            }
            logger.info("task \(state.rawValue)", metadata: ["task": "\(id)", "error": "\(error ?? "")"])
            notifyFinal(task)
        } catch {
            logger.error("could not record task outcome", metadata: ["task": "\(id)", "error": "\(error)"])
        }
    }

    /// Saves a worker's answer: images into the object store, `info` parsed from its JSON string.
    func store(_ answer: Data, of task: TaskRecord) async throws -> TaskResult {
        let response = try JSONDecoder().decode(A1111.GenerationResponse.self, from: answer)
        var keys: [String] = []
        for (index, image) in response.images.enumerated() {
            guard let data = Data(base64Encoded: image, options: .ignoreUnknownCharacters) else {
                throw WorkerCallError.rejected(status: 200, detail: "image \(index + 1) is not valid base64")
            }
            let key = ObjectStore.imageKey(user: task.user, taskID: task.id, index: index + 1)
            try await objects.put(data, key: key)
            keys.append(key)
        }
        let info = (try? JSONValue(parsing: Data(response.info.utf8))) ?? .string(response.info)
        return TaskResult(images: keys, info: info, parameters: response.parameters)
    }
}

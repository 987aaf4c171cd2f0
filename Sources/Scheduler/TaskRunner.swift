import Foundation
import Logging
import NIOCore
import ObjectStore
import SDBoxCore
import Storage
import Synchronization

/// Runs tasks on the workers the ``Scheduler`` grants them: marks a task running, sends it to its worker
/// while watching that the worker still answers, keeps its progress, stores its images, and records how it
/// ended, waiting for disk space rather than dropping a change. It also wakes whoever waits for a task and
/// tells the rest of sdbox (``SchedulerEvent``) when a task ends or its images are stored.
///
/// Its tables sit behind a lock rather than in an actor, so the scheduler registers a run at the moment
/// it grants the worker, and polls read progress without queueing behind anything.
public final class TaskRunner: Sendable {
    /// How a run left its worker, for the scheduler.
    struct Ending: Sendable {
        /// Whether the worker may take another task (false: it failed under the task, or must go).
        var healthy: Bool
        /// A task to put back in its queue: its worker was lost and it has attempts left.
        var requeue: TaskRecord?
        /// How long a generation took, for the model's pace.
        var generationSeconds: Double?
    }

    struct Run {
        let worker: any WorkerSlot
        /// The task's first write, when the task was granted while being written (``beginWriting(_:)``):
        /// the run's changes wait for it, and the run writes no running mark when it carries one.
        var insertion: TaskInsertion?
        var cancelRequested = false
        /// The interrupt sent to the worker for a cancel. The worker is given back only once it is sent:
        /// A1111's interrupt stops whatever the worker runs, and would stop its next task.
        var interrupt: Task<Void, Never>?
        /// Set when the task must fail whatever its worker answers (its pool was deleted).
        var abortReason: String?
    }

    struct State {
        var runs: [String: Run] = [:]
        /// The progress call under way to the worker of each running task; polls that come meanwhile share it.
        var progressPolls: [String: Task<A1111.Progress?, Never>] = [:]
        var waiters = TaskWaiters<TaskRecord?>()
        /// Callers waiting for a task's ``EarlyOutcome`` (``waitForEarlyOutcome(_:)``).
        var earlyWaiters = TaskWaiters<EarlyOutcome?>()
        /// Tasks queued while their record is written (``beginWriting(_:)``).
        var unwritten: [String: TaskInsertion] = [:]
        /// Task changes held in memory because the disk is full (see ``persist(_:_:)``).
        var changesWaitingForDisk = 0
        var shuttingDown = false

        /// Whether task `id` runs here or is being written: it is not final, and its end here (``release(_:)``,
        /// under the same lock) will wake whoever waits for it.
        func isLive(_ id: String) -> Bool { runs[id] != nil || unwritten[id] != nil }
    }

    let configuration: SchedulerConfiguration
    public let tasks: any TaskStore
    let objects: ObjectStore
    let client: any WorkerClient
    let logger: Logger
    let metrics = SchedulerMetrics()
    let events: AsyncStream<SchedulerEvent>.Continuation
    /// Each user's unfinished tasks, for the per-user limits.
    public let usage = UsageLedger()
    /// The last answers of the progress calls, read without waiting while they are fresh.
    let progressBoard = ProgressBoard(freshness: .milliseconds(100))
    private let state = Mutex(State())

    init(
        configuration: SchedulerConfiguration, tasks: any TaskStore, objects: ObjectStore, client: any WorkerClient, logger: Logger,
        events: AsyncStream<SchedulerEvent>.Continuation
    ) {
        self.configuration = configuration
        self.tasks = tasks
        self.objects = objects
        self.client = client
        self.logger = logger
        self.events = events
    }

    // MARK: Runs

    /// Notes that task `id` was granted `worker`, before its run starts, so that a cancel in between is kept.
    /// A task whose first write has not started yet is written already running (``TaskInsertion``).
    func register(_ id: String, on worker: any WorkerSlot) {
        let insertion = state.withLock { state in
            let insertion = state.unwritten[id]
            state.runs[id] = Run(worker: worker, insertion: insertion)
            return insertion
        }
        insertion?.markRunning(at: Date())
    }

    /// Notes a task that is queued before it is written: a run that starts meanwhile takes the record from
    /// here, and its changes wait for the write. The caller writes ``TaskInsertion/seal()`` and reports
    /// how that went to ``written(_:_:)``.
    public func beginWriting(_ task: TaskRecord) -> TaskInsertion {
        let insertion = TaskInsertion(task)
        state.withLock { $0.unwritten[task.id] = insertion }
        return insertion
    }

    /// Records how the write of a task noted by ``beginWriting(_:)`` ended, wakes whatever waits for it,
    /// and forgets the task as unwritten.
    public func written(_ insertion: TaskInsertion, _ outcome: Result<TaskRecord, any Error>) {
        // Forgotten first: a later grant of the task (after its first run ended) reads it from the store.
        state.withLock { _ = $0.unwritten.removeValue(forKey: insertion.queued.id) }
        insertion.finish(outcome)
    }

    /// The ids of running tasks.
    public func runningTaskIDs() -> [String] {
        state.withLock { Array($0.runs.keys) }
    }

    /// Whether a task of `model` is running.
    func isRunning(model: String) -> Bool {
        state.withLock { $0.runs.values.contains { $0.worker.model == model } }
    }

    /// Marks the running tasks of `model` to fail with `reason` whatever their workers answer.
    func abort(model: String, reason: String) {
        state.withLock { state in
            for (id, run) in state.runs where run.worker.model == model { state.runs[id]?.abortReason = reason }
        }
    }

    /// Asks the worker of running task `id` to stop it; the task ends `cancelled` when the worker lets go.
    /// False when the task is not running.
    func cancel(_ id: String) async -> Bool {
        let interrupt = state.withLock { state -> Task<Void, Never>? in
            guard var run = state.runs[id] else { return nil }
            run.cancelRequested = true
            if run.interrupt == nil {
                let worker = run.worker
                run.interrupt = Task { await self.client.interrupt(worker.endpoint) }
            }
            state.runs[id] = run
            return run.interrupt
        }
        guard let interrupt else { return false }
        await interrupt.value
        return true
    }

    /// Stops recording and retrying: sdbox is shutting down, and tasks left running run again at next start.
    func shutDown() {
        state.withLock { $0.shuttingDown = true }
    }

    var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    func run(of id: String) -> Run? { state.withLock { $0.runs[id] } }

    /// Runs task `id` on `worker` (registered with ``register(_:on:)``), gives the worker back
    /// (`workerDone`) and records the outcome.
    ///
    /// Nothing a caller does not wait for delays the worker or the task after it: the task is marked
    /// running on disk while its worker works; a generation's answer goes to the callers waiting for its
    /// images (``waitForEarlyOutcome(_:)``) before the images are stored; the worker is given back as soon as it
    /// answered, and the outcome is recorded (after the running mark) while it takes its next task.
    func run(_ id: String, on worker: any WorkerSlot, timeoutSeconds: Int, workerDone: @Sendable (Ending) async -> Void) async {
        let insertion = run(of: id)?.insertion
        let task: TaskRecord
        do {
            if let insertion {
                task = insertion.queued
            } else {
                guard let queued = try await waitingForStore(id, { try await self.tasks.get(id) }) else { throw TaskStoreError.notFound(id) }
                task = queued
            }
        } catch {
            logger.error("task could not start", metadata: ["task": "\(id)", "error": "\(ErrorSummary(error))"])
            forget(id)
            return await workerDone(Ending(healthy: true))
        }
        if run(of: id)?.cancelRequested == true {
            await forget(id)?.interrupt?.value
            await workerDone(Ending(healthy: true))
            // A task not on disk yet is cancelled once it is (one that could not be written is not recorded).
            if let insertion, (try? await insertion.written) == nil { return }
            return await finish(id, state: .cancelled, error: nil)
        }
        let marking = Task {
            if let insertion {
                let written = try await insertion.written
                if insertion.carriesMark { return written }
            }
            return try await self.persist(id) {
                $0.state = .running
                $0.attempts += 1
                $0.startedAt = Date()
            }
        }
        logger.info("task started", metadata: ["task": "\(id)", "model": "\(task.model)", "worker": "\(worker.id)", "attempt": "\(task.attempts + 1)"])
        let started = ContinuousClock.now
        let outcome = await call(task, on: worker, timeoutSeconds: timeoutSeconds)
        let seconds = started.duration(to: .now).seconds
        let run = forget(id)
        let cancelled = run?.cancelRequested ?? false
        if case .lost(let error) = outcome {
            // The worker is gone: the task goes back to its queue (or fails) before the worker's slot is reused.
            guard let running = await marked(marking, id) else { return await workerDone(Ending(healthy: false)) }
            return await workerDone(await workerLost(running, run: run, error: error))
        }
        var ending = Ending(healthy: true)
        // A generation's time teaches the model's pace; a cancelled one's or a passthrough call's does not.
        if case .answered = outcome, !cancelled, task.kind != .passthrough { ending.generationSeconds = seconds }
        // The worker takes its next task while this one's outcome is recorded (once a cancel's interrupt is sent).
        await run?.interrupt?.value
        async let freed: Void = workerDone(ending)
        await record(outcome, of: task, marking: marking, run: run, cancelled: cancelled)
        await freed
    }

    /// Records how a run that did not lose its worker ended, once the task's running mark is written.
    func record(_ outcome: CallOutcome, of task: TaskRecord, marking: Task<TaskRecord, any Error>, run: Run?, cancelled: Bool) async {
        let id = task.id
        guard await marked(marking, id) != nil else { return }
        switch outcome {
        case .lost:
            break
        case .unsendable(let reason):
            await finish(id, state: .failed, error: "the task's request cannot be sent: \(reason)")
        case .rejected(let status, let detail):
            await finish(id, state: cancelled ? .cancelled : .failed, error: run?.abortReason ?? (cancelled ? nil : "worker error (\(status)): \(detail)"))
        case .answered(let answer, let read):
            if let reason = run?.abortReason {
                await finish(id, state: .failed, error: reason)
                return
            }
            do {
                // In a fleet, a box whose claim was taken over stores nothing (the task runs elsewhere).
                try await waitingForStore(id) { try await self.tasks.confirmClaim(id) }
                let result = try await store(answer, read: read, of: task)
                let failure = answer.isSuccess ? nil : "worker answered \(answer.status): \(answer.detail)"
                await finish(id, state: cancelled ? .cancelled : failure == nil ? .succeeded : .failed, error: failure, result: result)
            } catch {
                await finish(id, state: .failed, error: "could not store the result: \(error)")
            }
        }
    }

    /// The task as marked running, once that is written; nil (logged) when it could not be: then nothing
    /// about the task can be recorded (it was removed, or sdbox stops).
    func marked(_ marking: Task<TaskRecord, any Error>, _ id: String) async -> TaskRecord? {
        do {
            return try await marking.value
        } catch {
            logger.error("task could not be marked running", metadata: ["task": "\(id)", "error": "\(ErrorSummary(error))"])
            return nil
        }
    }

    /// How a worker call ended.
    enum CallOutcome {
        /// The worker answered: a generation's answer is also read (`read`, nil for a passthrough call).
        case answered(WorkerResponse, read: Result<WorkerAnswer, any Error>?)
        /// The worker refused the task (an error status for a generation).
        case rejected(status: Int, detail: String)
        /// The worker died or stopped answering under the task.
        case lost(WorkerCallError)
        /// The task's stored request cannot be made into a call.
        case unsendable(String)
    }

    /// Sends a task to its worker while watching that the worker still answers. A generation's answer is
    /// read at once and handed to the callers waiting for it (unless the task must fail whatever it is).
    func call(_ task: TaskRecord, on worker: any WorkerSlot, timeoutSeconds: Int) async -> CallOutcome {
        let call: WorkerCall
        do {
            call = try WorkerCall(task: task, checkpoint: worker.namesCheckpointInCalls ? task.model : nil)
        } catch {
            return .unsendable("\(error)")
        }
        let watchdog = Task { await self.watch(worker) }
        defer { watchdog.cancel() }
        let answer: WorkerResponse
        do throws(WorkerCallError) {
            answer = try await worker.whileAlive { () async throws(WorkerCallError) -> WorkerResponse in
                try await self.client.send(call, to: worker.endpoint, timeout: .seconds(Int64(timeoutSeconds)))
            }
        } catch {
            return .lost(error)
        }
        // A generation must succeed; a passthrough call's answer is its result, whatever its status.
        guard task.kind != .passthrough else { return .answered(answer, read: nil) }
        guard answer.isSuccess else { return .rejected(status: answer.status, detail: answer.detail) }
        if task.request[TaskRecord.infoAdditionsKey] == nil, run(of: task.id)?.abortReason == nil, publish(EarlyOutcome(answer: answer.body), of: task.id) {
            // The caller just handed the answer runs next on this thread, rather than on one woken for it (a
            // wake-up took 80 to 140 µs on the 2-core machine); what is left of this run waits for no one.
            await Task.yield()
        }
        let read = Result { try WorkerAnswer(kind: task.kind, answer: answer.body, request: task.request) }
        return .answered(answer, read: read)
    }

    /// Pings a busy worker every `livenessSeconds`; one that fails `livenessFailures` pings in a row has
    /// stopped answering and is killed, so its task is retried elsewhere rather than waiting for the task
    /// timeout.
    func watch(_ worker: any WorkerSlot) async {
        var failures = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(configuration.livenessSeconds))
            if Task.isCancelled { return }
            if await client.ping(worker.endpoint, timeout: .milliseconds(Int64(configuration.livenessSeconds * 1000))) {
                failures = 0
                continue
            }
            failures += 1
            if failures >= configuration.livenessFailures {
                logger.warning("worker stopped answering; giving it up", metadata: ["worker": "\(worker.id)", "model": "\(worker.model)"])
                worker.abandon()
                return
            }
        }
    }

    /// The worker died or stopped answering under a task (`run`, its run as it stood): the task goes back
    /// to its queue, or fails when it has had all its attempts. During shutdown the task is left
    /// `running`, to be re-queued at next start.
    func workerLost(_ task: TaskRecord, run: Run?, error: WorkerCallError) async -> Ending {
        if isShuttingDown || Task.isCancelled { return Ending(healthy: false) }
        if let reason = run?.abortReason {
            await finish(task.id, state: .failed, error: reason)
        } else if run?.cancelRequested == true {
            await finish(task.id, state: .cancelled, error: nil)
        } else if task.attempts >= configuration.maxAttempts {
            await finish(task.id, state: .failed, error: "the worker failed \(task.attempts) times; last: \(error)")
        } else {
            logger.warning("worker lost a task; queuing it again", metadata: ["task": "\(task.id)", "error": "\(error)"])
            do {
                return Ending(healthy: false, requeue: try await persist(task.id) { $0.state = .queued })
            } catch {
                logger.error("could not re-queue task", metadata: ["task": "\(task.id)", "error": "\(ErrorSummary(error))"])
            }
        }
        return Ending(healthy: false)
    }

    /// Forgets a run that ended, and returns it as it stood (cancel asked, interrupt sent), in one step.
    @discardableResult
    func forget(_ id: String) -> Run? {
        let run = state.withLock { state in
            state.progressPolls[id] = nil
            return state.runs.removeValue(forKey: id)
        }
        progressBoard.remove(id)
        return run
    }

    // MARK: Progress

    /// The running task's latest report from the board, asking the worker again in the background when it
    /// is stale; nil when the board has none.
    func postedProgress(of id: String) -> A1111.Progress?? {
        guard let latest = progressBoard.latest(of: id) else { return nil }
        if latest.refresh { Task { await self.refreshProgress(of: id) } }
        return .some(latest.report)
    }

    /// Where running task `id` stands, its worker asked (one call at a time, shared); nil when it is not running.
    func progress(of id: String) async -> TaskProgress? {
        guard let worker = run(of: id)?.worker else { return nil }
        let report = await workerProgress(of: id, on: worker)
        // A worker's progress is its current job's: if the task ended while the worker answered, the
        // answer may be about the worker's next task.
        guard run(of: id)?.worker.id == worker.id else { return .notActive }
        return .running(report)
    }

    func refreshProgress(of id: String) async {
        guard let worker = run(of: id)?.worker else {
            progressBoard.remove(id)
            return
        }
        _ = await workerProgress(of: id, on: worker)
    }

    /// The progress the worker of running task `id` reports: one call at a time, its answer posted on the board.
    func workerProgress(of id: String, on worker: any WorkerSlot) async -> A1111.Progress? {
        let (client, endpoint) = (client, worker.endpoint)
        let (poll, isNew) = state.withLock { state -> (Task<A1111.Progress?, Never>, Bool) in
            if let poll = state.progressPolls[id] { return (poll, false) }
            let poll = Task { await client.progress(endpoint) }
            state.progressPolls[id] = poll
            return (poll, true)
        }
        if isNew { metrics.workerProgressCalled(model: worker.model) }
        let report = await poll.value
        let post = state.withLock { state -> Bool in
            guard state.progressPolls[id] == poll else { return false }
            state.progressPolls[id] = nil
            return state.runs[id] != nil
        }
        if post { progressBoard.post(report, of: id) }
        return report
    }

    // MARK: Outcomes

    /// Cancels a task taken out of its queue before it ran (or, in a fleet, one no box holds).
    public func cancelQueued(_ id: String) async throws -> TaskRecord {
        await untilWritten(id)
        let task = try await tasks.update(id) {
            $0.state = .cancelled
            $0.finishedAt = Date()
        }
        taskEnded(task)
        return task
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
        } catch TaskStoreError.claimLost {
            // In a fleet: another box took the task over after this box's claim expired; its outcome is the one.
            logger.warning("task taken over by another box; this box's outcome is dropped", metadata: ["task": "\(id)"])
            return
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

    /// Writes a change of a task, retrying each second while the store cannot take it (the disk is full,
    /// or PostgreSQL cannot be reached: ``StoreFailure/isTransient(_:)``), so that an outcome is never
    /// dropped while sdbox runs; other errors, and shutdown, end the attempts. A task still being written
    /// (``beginWriting(_:)``) is changed once that write has ended.
    func persist(_ id: String, _ change: @escaping @Sendable (inout TaskRecord) throws -> Void) async throws -> TaskRecord {
        await untilWritten(id)
        return try await waitingForStore(id) { try await self.tasks.update(id, change) }
    }

    /// Returns once the first write of task `id` has ended, if it is being written (``beginWriting(_:)``),
    /// whether it succeeded or not.
    func untilWritten(_ id: String) async {
        if let insertion = state.withLock({ $0.unwritten[id] }) { _ = try? await insertion.written }
    }

    /// `body`'s answer about task `id`, asked again each second while the store cannot answer (``persist(_:_:)``).
    func waitingForStore<R: Sendable>(_ id: String, _ body: @Sendable () async throws -> R) async throws -> R {
        var waiting = false
        defer {
            if waiting {
                let count = state.withLock { state in
                    state.changesWaitingForDisk -= 1
                    return state.changesWaitingForDisk
                }
                metrics.changesWaitingForDisk(count)
            }
        }
        let answer = try await StoreFailure.retrying(while: { !isShuttingDown }, waits: { error in
            logger.error("the store cannot take a task change now (disk full or database unreachable); it waits", metadata: ["task": "\(id)", "error": "\(error)"])
            waiting = true
            let count = state.withLock { state in
                state.changesWaitingForDisk += 1
                return state.changesWaitingForDisk
            }
            metrics.changesWaitingForDisk(count)
        }, body)
        if waiting { logger.notice("the store took the task change that waited", metadata: ["task": "\(id)"]) }
        return answer
    }

    /// Tells the rest of sdbox of a task that ended without a run here: in a fleet, one this box gave back
    /// to the queue after it had all its attempts.
    public func announceEnded(_ task: TaskRecord) {
        taskEnded(task)
    }

    /// Accounts for a task that reached its final state, wakes whoever waits for it and tells the rest of sdbox.
    func taskEnded(_ task: TaskRecord) {
        metrics.taskFinished(task)
        release(task)
        events.yield(.taskFinished(task))
    }

    /// Frees a final task's share of its user's queue (if counted here) and wakes whoever waits for it.
    func release(_ task: TaskRecord) {
        usage.withdraw(task: task.id)
        let (waiting, waitingEarly) = state.withLock { ($0.waiters.takeAll(of: task.id), $0.earlyWaiters.takeAll(of: task.id)) }
        for waiter in waiting { waiter.resume(returning: task) }
        for waiter in waitingEarly { waiter.resume(returning: nil) }
    }

    /// Saves a worker's answer as the task's result: a generation's or extras' images into the object store
    /// (all at once), `info` parsed from its JSON string; a passthrough call's as ``PassthroughResult``
    /// keeps it. When an image cannot be saved (disk full), the ones already saved are removed, so nothing
    /// is half written.
    func store(_ answer: WorkerResponse, read: Result<WorkerAnswer, any Error>?, of task: TaskRecord) async throws -> TaskResult {
        guard let read else { return try await PassthroughResult.store(answer, of: task, in: objects) }
        let output = try read.get()
        var files: [(data: Data, key: String)] = []
        for (index, image) in output.images.enumerated() {
            guard let data = Data(base64Encoded: image, options: .ignoreUnknownCharacters) else {
                throw WorkerCallError.rejected(status: 200, detail: "image \(index + 1) is not valid base64")
            }
            files.append((data, ObjectKey.image(user: task.user, taskID: task.id, index: index + 1)))
        }
        try await objects.put(files)
        return TaskResult(images: files.map(\.key), info: output.info, parameters: output.parameters)
    }

    // MARK: Waiting

    /// Waits for a task's ``EarlyOutcome`` and returns it as soon as it comes, before the outcome is
    /// recorded. Nil when the task ends without one (it failed, sdbox had something to add, or it was
    /// final already): its final record tells the rest.
    public func waitForEarlyOutcome(_ id: String) async -> EarlyOutcome? {
        await withCheckedContinuation { continuation in
            let (number, live) = state.withLock { ($0.earlyWaiters.add(continuation, for: id), $0.isLive(id)) }
            // Final before the wait began: nothing will be handed over. (A live task cannot be: no store read.)
            if !live { Task { await self.resumeIfFinal(id, \.earlyWaiters, number: number, with: { _ in nil }) } }
        }
    }

    /// Wakes whoever waits here for a task that another box of the fleet brought to its final state, and
    /// frees its user's share of the queue if it was counted here.
    public func taskEndedElsewhere(_ task: TaskRecord) {
        guard task.state.isFinal else { return }
        release(task)
    }

    /// The ids of the tasks someone waits for here.
    public func waitedTaskIDs() -> [String] {
        state.withLock { Array(Set($0.waiters.ids).union($0.earlyWaiters.ids)) }
    }

    /// Hands an early outcome to the callers waiting for it; false when none waits.
    func publish(_ outcome: EarlyOutcome, of id: String) -> Bool {
        let waiting = state.withLock { $0.earlyWaiters.takeAll(of: id) }
        for waiter in waiting { waiter.resume(returning: outcome) }
        return !waiting.isEmpty
    }

    /// Waits until a task is final and returns it; `nil` if it does not exist. With a `timeout`, returns
    /// the task as it stands when the time is up.
    public func waitUntilFinal(_ id: String, timeout: Duration? = nil) async -> TaskRecord? {
        await withCheckedContinuation { continuation in
            let (number, live) = state.withLock { ($0.waiters.add(continuation, for: id), $0.isLive(id)) }
            if !live { Task { await self.resumeIfFinal(id, \.waiters, number: number, with: { $0 }) } }
            if let timeout {
                Task {
                    try? await Task.sleep(for: timeout)
                    await self.resumeIfFinal(id, \.waiters, number: number, evenIfNotFinal: true, with: { $0 })
                }
            }
        }
    }

    /// Resumes one waiter of a table, with what `answer` makes of its task, if the task is already final
    /// or gone (it ended before the waiter was added), or at once with `evenIfNotFinal`.
    func resumeIfFinal<Value: Sendable>(
        _ id: String, _ table: any WritableKeyPath<State, TaskWaiters<Value>> & Sendable, number: Int, evenIfNotFinal: Bool = false,
        with answer: @Sendable (TaskRecord?) -> Value
    ) async {
        let task = try? await tasks.get(id)
        guard evenIfNotFinal || task == nil || task?.state.isFinal == true else { return }
        state.withLock { $0[keyPath: table].take(number, of: id) }?.resume(returning: answer(task))
    }
}

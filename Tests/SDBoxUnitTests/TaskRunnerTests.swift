import Foundation
import ImageCodec
import Logging
import NIOCore
import ObjectStore
import SDBoxCore
import Storage
import Synchronization
import Testing

@testable import Scheduler

/// A worker that answers from a script, in memory: the runner's rules without processes.
final class ScriptedWorker: WorkerClient {
    let generate: @Sendable (ScriptedWorker) async throws(WorkerCallError) -> WorkerResponse
    let calls = Mutex<[String]>([])
    /// How long an interrupt call takes to be answered, and when the last one was.
    let interruptTakes: Duration
    let interruptAnswered = Mutex<ContinuousClock.Instant?>(nil)

    init(interruptTakes: Duration = .zero, generate: @escaping @Sendable (ScriptedWorker) async throws(WorkerCallError) -> WorkerResponse) {
        self.interruptTakes = interruptTakes
        self.generate = generate
    }

    var wasInterrupted: Bool { calls.withLock { $0.contains("POST /sdapi/v1/interrupt") } }

    func send(_ call: WorkerCall, to endpoint: WorkerEndpoint, timeout: TimeAmount) async throws(WorkerCallError) -> WorkerResponse {
        calls.withLock { $0.append("\(call.method) \(call.path)") }
        if call.path == "/sdapi/v1/txt2img" { return try await generate(self) }
        if call.path == "/sdapi/v1/interrupt" {
            try? await Task.sleep(for: interruptTakes)
            interruptAnswered.withLock { $0 = .now }
        }
        return WorkerResponse(status: 200, contentType: "application/json", body: Data("{}".utf8))
    }

    /// A1111's answer with one 8x8 image.
    static func picture() -> WorkerResponse {
        let png = (try? PNGCodec.encode(PixelImage(width: 8, height: 8)).base64EncodedString()) ?? ""
        let body: JSONValue = ["images": [.string(png)], "parameters": [:], "info": "{\"seed\": 1}"]
        return WorkerResponse(status: 200, contentType: "application/json", body: (try? body.encoded()) ?? Data())
    }
}

/// A runner on a real task store and object store in a temporary folder, with a scripted worker.
struct RunnerBench {
    let directory: URL
    let tasks: any TaskStore
    let runner: TaskRunner
    let worker: WorkerProcess

    init(_ client: ScriptedWorker, maxAttempts: Int = 2) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-runner-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        tasks = LMDBTaskStore(database: try Database(path: directory.path + "/db"))
        let (_, sink) = AsyncStream.makeStream(of: SchedulerEvent.self)
        runner = TaskRunner(
            configuration: SchedulerConfiguration(maxAttempts: maxAttempts, dataDirectory: directory.path, executablePath: "/bin/false"),
            tasks: tasks, objects: try ObjectStore(root: directory.path + "/objects"), client: client,
            logger: Logger(label: "test"), events: sink
        )
        worker = WorkerProcess(
            id: 1, model: "demo.safetensors", port: 1, profile: WorkerLaunchProfile(command: ["true"]),
            logPath: directory.path + "/worker.log", runDirectory: directory.path
        )
    }

    /// A txt2img task of user `u`, not stored yet.
    static func newTask() -> TaskRecord {
        TaskRecord(id: TaskID.make(), kind: .txt2img, model: "demo.safetensors", user: "u", request: ["prompt": "fox", "steps": 2])
    }

    /// Writes a task noted by ``TaskRunner/beginWriting(_:)`` and reports it written, as a submission does.
    func write(_ insertion: TaskInsertion) async throws {
        runner.written(insertion, .success(try await tasks.insert(insertion.seal())))
    }

    /// A stored txt2img task, granted the worker as the scheduler grants it.
    func grantedTask() async throws -> TaskRecord {
        let task = try await tasks.insert(Self.newTask())
        runner.usage.add(task: task.id, user: "u", bytes: task.request.storageSize)
        runner.register(task.id, on: worker)
        return task
    }

    /// Runs a task to the end of its recording, and returns what it told the scheduler of its worker.
    func run(_ task: TaskRecord) async -> TaskRunner.Ending {
        let told = EndingRecorder()
        await runner.run(task.id, on: worker, timeoutSeconds: 60) { await told.record($0) }
        return await told.ending ?? TaskRunner.Ending(healthy: false)
    }

    /// What a run told of its worker.
    actor EndingRecorder {
        var ending: TaskRunner.Ending?
        func record(_ ending: TaskRunner.Ending) { self.ending = ending }
    }

    func removeFolder() { try? FileManager.default.removeItem(at: directory) }
}

@Suite struct TaskRunnerTests {
    @Test func aGenerationSucceedsWithItsImagesStored() async throws {
        let bench = try RunnerBench(ScriptedWorker { _ in ScriptedWorker.picture() })
        defer { bench.removeFolder() }
        let task = try await bench.grantedTask()
        let ending = await bench.run(task)
        #expect(ending.healthy && ending.requeue == nil && ending.generationSeconds != nil)
        let final = try #require(await bench.runner.waitUntilFinal(task.id))
        #expect(final.state == .succeeded && final.attempts == 1)
        #expect(final.result?.images == ["images/u/\(task.id)_1.png"])
        #expect(bench.runner.runningTaskIDs().isEmpty)
        // The user's share is free again.
        #expect(bench.runner.usage.admit(task: "next", user: "u", bytes: 1, maxTasks: 1, maxBytes: 10) == .admitted)
    }

    @Test func aLostWorkerRequeuesTheTaskUntilItsAttemptsRunOut() async throws {
        let bench = try RunnerBench(ScriptedWorker { _ throws(WorkerCallError) in throw .unreachable("connection reset") }, maxAttempts: 2)
        defer { bench.removeFolder() }
        let task = try await bench.grantedTask()
        let first = await bench.run(task)
        #expect(!first.healthy)
        #expect(first.requeue?.state == .queued && first.requeue?.attempts == 1)
        bench.runner.register(task.id, on: bench.worker)
        let second = await bench.run(task)
        #expect(!second.healthy && second.requeue == nil)
        let final = try #require(try await bench.tasks.get(task.id))
        #expect(final.state == .failed && final.error?.contains("the worker failed 2 times") == true, "\(String(describing: final.error))")
    }

    @Test func aWorkerErrorFailsTheTaskAndKeepsTheWorker() async throws {
        let bench = try RunnerBench(ScriptedWorker { _ in
            WorkerResponse(status: 500, contentType: "application/json", body: Data(#"{"error": "OutOfMemoryError", "detail": "CUDA out of memory"}"#.utf8))
        })
        defer { bench.removeFolder() }
        let task = try await bench.grantedTask()
        let ending = await bench.run(task)
        #expect(ending.healthy && ending.requeue == nil)
        let final = try #require(try await bench.tasks.get(task.id))
        #expect(final.state == .failed && final.error == "worker error (500): OutOfMemoryError: CUDA out of memory")
    }

    @Test func aCancelledRunIsInterruptedAndEndsCancelled() async throws {
        // The worker generates until it is interrupted, then answers with what it made, as A1111 does.
        let bench = try RunnerBench(ScriptedWorker { worker in
            while !worker.wasInterrupted { try? await Task.sleep(for: .milliseconds(5)) }
            return ScriptedWorker.picture()
        })
        defer { bench.removeFolder() }
        let task = try await bench.grantedTask()
        async let ending = bench.run(task)
        while try await bench.tasks.get(task.id)?.state != .running { try await Task.sleep(for: .milliseconds(5)) }
        #expect(await bench.runner.cancel(task.id))
        #expect(await ending.healthy)
        let final = try #require(try await bench.tasks.get(task.id))
        #expect(final.state == .cancelled && final.result?.images.count == 1)
        #expect(await bench.runner.cancel(task.id) == false, "a task no longer running")
    }

    @Test func aCancelledRunGivesItsWorkerBackOnlyOnceTheInterruptIsSent() async throws {
        // The worker stops as soon as the interrupt reaches it, and answers the interrupt call 300 ms later.
        let client = ScriptedWorker(interruptTakes: .milliseconds(300)) { worker in
            while !worker.wasInterrupted { try? await Task.sleep(for: .milliseconds(5)) }
            return ScriptedWorker.picture()
        }
        let bench = try RunnerBench(client)
        defer { bench.removeFolder() }
        let task = try await bench.grantedTask()
        let givenBack = Mutex<ContinuousClock.Instant?>(nil)
        async let ran: Void = bench.runner.run(task.id, on: bench.worker, timeoutSeconds: 60) { _ in givenBack.withLock { $0 = .now } }
        while try await bench.tasks.get(task.id)?.state != .running { try await Task.sleep(for: .milliseconds(5)) }
        #expect(await bench.runner.cancel(task.id))
        await ran
        // Given back sooner, the worker could take its next task before the interrupt, which would stop that one.
        let interrupted = try #require(client.interruptAnswered.withLock { $0 })
        let freed = try #require(givenBack.withLock { $0 })
        #expect(freed >= interrupted)
        #expect(try await bench.tasks.get(task.id)?.state == .cancelled)
    }

    @Test func aCancelBeforeTheRunStartsIsKept() async throws {
        let bench = try RunnerBench(ScriptedWorker { _ in ScriptedWorker.picture() })
        defer { bench.removeFolder() }
        let task = try await bench.grantedTask()
        // Granted, not started yet: the scheduler registered the run, so the cancel is not lost.
        #expect(await bench.runner.cancel(task.id))
        _ = await bench.run(task)
        #expect(try await bench.tasks.get(task.id)?.state == .cancelled)
    }

    @Test func aDeletedPoolFailsItsRunningTaskWhateverTheWorkerAnswers() async throws {
        let started = Mutex(false)
        let bench = try RunnerBench(ScriptedWorker { _ in
            started.withLock { $0 = true }
            try? await Task.sleep(for: .milliseconds(100))
            return ScriptedWorker.picture()
        })
        defer { bench.removeFolder() }
        let task = try await bench.grantedTask()
        async let ending = bench.run(task)
        while !started.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
        bench.runner.abort(model: "demo.safetensors", reason: "the pool was deleted")
        _ = await ending
        let final = try #require(try await bench.tasks.get(task.id))
        #expect(final.state == .failed && final.error == "the pool was deleted")
    }

    @Test func aTaskGrantedBeforeItsWriteStartsIsWrittenOnceAlreadyRunning() async throws {
        let workerCalled = Mutex(false)
        let bench = try RunnerBench(ScriptedWorker { _ in
            workerCalled.withLock { $0 = true }
            return ScriptedWorker.picture()
        })
        defer { bench.removeFolder() }
        let queued = RunnerBench.newTask()
        let insertion = bench.runner.beginWriting(queued)
        bench.runner.register(queued.id, on: bench.worker)
        let toWrite = insertion.seal()
        #expect(toWrite.state == .running && toWrite.attempts == 1 && toWrite.startedAt != nil)
        // The run reaches its worker before the task is on disk, and records nothing until it is.
        async let ending = bench.run(queued)
        while !workerCalled.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
        #expect(try await bench.tasks.get(queued.id) == nil)
        try await bench.write(insertion)
        #expect(await ending.healthy)
        let final = try #require(await bench.runner.waitUntilFinal(queued.id))
        // The write carried the run's mark: one attempt, not two.
        #expect(final.state == .succeeded && final.attempts == 1)
    }

    @Test func aRunThatStartsAfterItsTaskWasWrittenRunningMarksItNoMore() async throws {
        let bench = try RunnerBench(ScriptedWorker { _ in ScriptedWorker.picture() })
        defer { bench.removeFolder() }
        let queued = RunnerBench.newTask()
        let insertion = bench.runner.beginWriting(queued)
        bench.runner.register(queued.id, on: bench.worker)
        // Granted, written already running, and only then does the run start (its job waited its turn).
        try await bench.write(insertion)
        _ = await bench.run(queued)
        let final = try #require(await bench.runner.waitUntilFinal(queued.id))
        #expect(final.state == .succeeded && final.attempts == 1)
    }

    @Test func aTaskGrantedAfterItsWriteStartedIsMarkedRunningByItsRun() async throws {
        let bench = try RunnerBench(ScriptedWorker { _ in ScriptedWorker.picture() })
        defer { bench.removeFolder() }
        let queued = RunnerBench.newTask()
        let insertion = bench.runner.beginWriting(queued)
        let toWrite = insertion.seal()
        bench.runner.register(queued.id, on: bench.worker)
        #expect(toWrite.state == .queued && toWrite.attempts == 0 && !insertion.carriesMark)
        try await bench.write(insertion)
        _ = await bench.run(queued)
        let final = try #require(await bench.runner.waitUntilFinal(queued.id))
        #expect(final.state == .succeeded && final.attempts == 1 && final.startedAt != nil)
    }

    @Test func aCancelBeforeTheRunStartsIsKeptForATaskNotOnDiskYet() async throws {
        let client = ScriptedWorker { _ in ScriptedWorker.picture() }
        let bench = try RunnerBench(client)
        defer { bench.removeFolder() }
        let queued = RunnerBench.newTask()
        let insertion = bench.runner.beginWriting(queued)
        bench.runner.register(queued.id, on: bench.worker)
        #expect(await bench.runner.cancel(queued.id))
        // The run sees the cancel before its task is written, and records it once the task is on disk.
        async let ending = bench.run(queued)
        try await Task.sleep(for: .milliseconds(50))
        try await bench.write(insertion)
        _ = await ending
        #expect(try await bench.tasks.get(queued.id)?.state == .cancelled)
        #expect(!client.calls.withLock { $0.contains("POST /sdapi/v1/txt2img") }, "the worker was never asked to generate")
    }

    @Test func aTaskFailedOrCancelledWhileItIsWrittenEndsSoOnDisk() async throws {
        let bench = try RunnerBench(ScriptedWorker { _ in ScriptedWorker.picture() })
        defer { bench.removeFolder() }
        // The scheduler can refuse a task the moment it is queued (its model cannot be placed), before
        // its write ends; the failure waits for the write rather than finding no record.
        let refused = RunnerBench.newTask()
        let refusedWrite = bench.runner.beginWriting(refused)
        async let failing: Void = bench.runner.finish(refused.id, state: .failed, error: "the model cannot be placed")
        async let final = bench.runner.waitUntilFinal(refused.id, timeout: .seconds(10))
        try await Task.sleep(for: .milliseconds(50))
        try await bench.write(refusedWrite)
        await failing
        #expect(await final?.state == .failed)
        #expect(try await bench.tasks.get(refused.id)?.state == .failed)
        // So does a cancel of a task still queued.
        let cancelled = RunnerBench.newTask()
        let cancelledWrite = bench.runner.beginWriting(cancelled)
        async let cancelling = bench.runner.cancelQueued(cancelled.id)
        try await Task.sleep(for: .milliseconds(50))
        try await bench.write(cancelledWrite)
        #expect(try await cancelling.state == .cancelled)
        #expect(try await bench.tasks.get(cancelled.id)?.state == .cancelled)
    }

    @Test func aRunWhoseTaskCouldNotBeWrittenRecordsNothing() async throws {
        let bench = try RunnerBench(ScriptedWorker { _ in ScriptedWorker.picture() })
        defer { bench.removeFolder() }
        let queued = RunnerBench.newTask()
        let insertion = bench.runner.beginWriting(queued)
        bench.runner.register(queued.id, on: bench.worker)
        _ = insertion.seal()
        bench.runner.written(insertion, .failure(WriteRefused()))
        _ = await bench.run(queued)
        #expect(try await bench.tasks.get(queued.id) == nil)
        #expect(bench.runner.runningTaskIDs().isEmpty)
    }

    struct WriteRefused: Error {}
}

/// The per-user limits' ledger counts tasks by id.
@Suite struct UsageLedgerTests {
    @Test func tasksAreCountedOnceByIdAndWithdrawnOnce() {
        let ledger = UsageLedger()
        #expect(ledger.admit(task: "a", user: "u", bytes: 10, maxTasks: 2, maxBytes: 100) == .admitted)
        #expect(ledger.admit(task: "a", user: "u", bytes: 10, maxTasks: 2, maxBytes: 100) == .alreadyCounted, "the same client id twice")
        #expect(ledger.admit(task: "b", user: "u", bytes: 10, maxTasks: 2, maxBytes: 100) == .admitted)
        var full = ActiveUsage()
        full.tasks = 2
        full.bytes = 20
        #expect(ledger.admit(task: "c", user: "u", bytes: 10, maxTasks: 2, maxBytes: 100) == .refused(full))
        // A task counted elsewhere (another box's) changes nothing; one withdrawn twice frees one place.
        ledger.withdraw(task: "elsewhere")
        ledger.withdraw(task: "a")
        ledger.withdraw(task: "a")
        #expect(ledger.admit(task: "c", user: "u", bytes: 10, maxTasks: 2, maxBytes: 100) == .admitted)
        #expect(ledger.admit(task: "d", user: "u", bytes: 10, maxTasks: 2, maxBytes: 100) != .admitted)
    }

    /// In a fleet, what the other boxes accepted counts with what this box counts.
    @Test func whatTheUserHasElsewhereCountsToo() {
        let ledger = UsageLedger()
        #expect(ledger.admit(task: "a", user: "u", bytes: 10, maxTasks: 3, maxBytes: 100, elsewhere: ActiveUsage(tasks: 1, bytes: 50)) == .admitted)
        #expect(ledger.admit(task: "b", user: "u", bytes: 10, maxTasks: 3, maxBytes: 100, elsewhere: ActiveUsage(tasks: 2, bytes: 50)) == .refused(ActiveUsage(tasks: 3, bytes: 60)))
        #expect(ledger.admit(task: "b", user: "u", bytes: 50, maxTasks: 3, maxBytes: 100, elsewhere: ActiveUsage(tasks: 1, bytes: 50)) == .refused(ActiveUsage(tasks: 2, bytes: 60)), "bytes")
        #expect(ledger.admit(task: "b", user: "v", bytes: 10, maxTasks: 3, maxBytes: 100, elsewhere: ActiveUsage(tasks: 2, bytes: 0)) == .admitted, "another user")
    }
}

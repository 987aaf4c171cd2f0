import Foundation
import NIOCore
import NIOHTTP1
import SDBoxCore
import Testing

/// The GPU scheduler through the real binary: worker pools that scale up to the cap, scale to zero,
/// evict the least recently used idle worker, place workers on GPUs described by configuration, and
/// pools changed and deleted through the original's API.
@Suite(.serialized, .timeLimit(.minutes(2))) struct SchedulingTests {
    static let threeModels = [
        "alpha.safetensors": DemoCheckpoint.contents(), "beta.safetensors": DemoCheckpoint.contents(),
        "gamma.safetensors": DemoCheckpoint.contents(),
    ]

    func submit(_ server: ServerProcess, model: String, steps: Int = 20, size: Int = 512) async throws -> String {
        let (status, accepted) = try await server.json(
            .POST, "/txt2img", ["stable_diffusion_model": .string(model), "prompt": "p", "steps": .integer(Int64(steps)), "width": .integer(Int64(size)), "height": .integer(Int64(size))],
            headers: [("Request-Type", "async")]
        )
        #expect(status == 200, "\(accepted)")
        return try #require(accepted["taskId"]?.stringValue)
    }

    func workers(_ server: ServerProcess) async throws -> [JSONValue] {
        try await server.json(.GET, "/workers").1["workers"]?.arrayValue ?? []
    }

    /// Polls `/workers` until `condition` holds of its workers, returning them then.
    func waitForWorkers(_ server: ServerProcess, timeout: Duration = .seconds(30), _ condition: ([JSONValue]) -> Bool) async throws -> [JSONValue] {
        try await server.waitForWorkers(timeout: timeout) { condition($0["workers"]?.arrayValue ?? []) }["workers"]?.arrayValue ?? []
    }

    @Test func scalesUpToTheCapThenEvictsAnIdleWorker() async throws {
        // Parking off: an idle worker whose room is needed stops.
        let server = try await ServerProcess(config: """
            scheduler:
              maxInstances: 2
              hostMemoryMiB: 0
            workers:
              reference: {stepMilliseconds: 20, minimumStepMilliseconds: 5}
            """, models: Self.threeModels)
        defer { server.destroy() }
        let alpha = try await submit(server, model: "alpha")
        let beta = try await submit(server, model: "beta")
        let gamma = try await submit(server, model: "gamma")
        // Two workers run at once (alpha and beta); gamma waits under the cap.
        var most = 0
        var seen: Set<String> = []
        while try await server.json(.GET, "/tasks/\(gamma)/result").1["status"] != "succeeded" {
            let current = try await workers(server)
            most = max(most, current.count)
            for worker in current { if let model = worker["model"]?.stringValue { seen.insert(model) } }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(most == 2, "never more workers than the cap")
        #expect(seen.isSubset(of: ["alpha.safetensors", "beta.safetensors", "gamma.safetensors"]) && seen.contains("gamma.safetensors"))
        // Each model got a worker of its own (the log says so even when the sampling above missed a short-lived one).
        let starts = server.log.split(separator: "\n").filter { $0.contains("starting worker") }
        for model in ["alpha.safetensors", "beta.safetensors", "gamma.safetensors"] {
            #expect(starts.contains { $0.contains("model=\(model)") }, "no worker started for \(model)")
        }
        for id in [alpha, beta] { #expect(try await server.waitForTask(id)["status"] == "succeeded") }
        // One idle worker, alpha's or beta's, was stopped to make room for gamma's (which of them is the least
        // recently used is the planner's unit tests' to say: a worker is free before its task's record is
        // written, so finish times cannot tell); the other stays, beside gamma's. The log names it.
        let lines = server.log.split(separator: "\n")
        func field(_ name: String, of line: Substring) -> String? {
            line.split(separator: " ").first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
        }
        let stopped = try #require(lines.first { $0.contains("stopping worker") && $0.contains("make room for another model") }.flatMap { field("worker", of: $0) })
        let evicted = try #require(lines.first { $0.contains("starting worker") && field("worker", of: $0) == stopped }.flatMap { field("model", of: $0) })
        #expect(["alpha.safetensors", "beta.safetensors"].contains(evicted))
        let final = try await waitForWorkers(server) { $0.count == 2 && !$0.contains { $0["state"] == "stopping" } }
        #expect(Set(final.compactMap { $0["model"]?.stringValue }) == Set(SchedulingTests.threeModels.keys).subtracting([evicted]))
    }

    /// A model whose pool needs more GPU memory than any GPU has is refused the moment its task is queued,
    /// before the task's write has ended: a caller who waits hears why at once, on both routes.
    @Test func aCallerWaitingForAModelNoGPUCanHoldHearsWhyAtOnce() async throws {
        let server = try await ServerProcess(config: """
            scheduler:
              gpus: [{index: 0, memoryMiB: 8000}]
              pool: {gpuMemoryMiB: 16000}
            """, models: Self.threeModels)
        defer { server.destroy() }
        for path in ["/txt2img", "/sdapi/v1/txt2img"] {
            let request: JSONValue = ["stable_diffusion_model": "alpha", "steps": 1, "width": 64, "height": 64]
            let body = try request.encoded()
            let answer = try await server.response(.POST, path, body: body, headers: [("Content-Type", "application/json")], timeout: .seconds(20))
            let text = String(decoding: answer.body, as: UTF8.self)
            #expect(answer.status == 500 && text.contains("needs 16000 MiB of GPU memory"), "\(path): \(answer.status) \(text)")
        }
    }

    @Test func anIdleWorkerIsParkedInRAMAndComesBackWithoutARestart() async throws {
        // Room on the GPU for one worker, in RAM for two parked ones.
        let server = try await ServerProcess(config: """
            scheduler:
              maxInstances: 1
              hostMemoryMiB: 8000
              gpus: [{index: 0, memoryMiB: 8000}]
              pool: {gpuMemoryMiB: 6000, hostMemoryMiB: 4000}
            workers:
              reference: {stepMilliseconds: 2, minimumStepMilliseconds: 1, startMilliseconds: 300, reloadMilliseconds: 50}
            """, models: Self.threeModels)
        defer { server.destroy() }
        func generate(_ model: String) async throws {
            let (status, answer) = try await server.json(.POST, "/txt2img", ["stable_diffusion_model": .string(model), "steps": 2, "width": 64, "height": 64])
            #expect(status == 200 && answer["status"] == "succeeded", "\(answer)")
        }
        func worker(_ model: String, in list: [JSONValue]) -> JSONValue? { list.first { $0["model"]?.stringValue == model + ".safetensors" } }
        try await generate("alpha")
        try await generate("beta")
        var list = try await waitForWorkers(server) { worker("alpha", in: $0)?["state"] == "parked" }
        let alpha = try #require(worker("alpha", in: list))
        #expect(alpha["tier"] == "ram" && alpha["parks"] == 1 && alpha["reloads"] == 0)
        #expect(worker("beta", in: list)?["tier"] == "gpu")
        let alphaPort = try #require(alpha["port"]?.integerValue)
        #expect(try await server.json(.GET, "http://127.0.0.1:\(alphaPort)/internal/ping").1["loaded"] == false, "the checkpoint left the GPU")
        // What sdbox reports of the GPU follows what the workers free: one worker's memory, not two.
        let answer = try await server.waitForWorkers { $0["gpus"]?[0]?["inUseMiB"] == 6000 }
        #expect(answer["gpus"]?[0]?["plannedMiB"] == 6000 && answer["parkedMiB"] == 4000 && answer["hostMemoryMiB"] == 8000)
        #expect(worker("alpha", in: answer["workers"]?.arrayValue ?? [])?["gpuMemoryInUseMiB"] == 0)
        #expect(worker("beta", in: answer["workers"]?.arrayValue ?? [])?["gpuMemoryInUseMiB"] == 6000)
        #expect(try await server.json(.GET, "/sdapi/v1/memory").1["cuda"]?["system"]?["used"] == .integer(6000 << 20))
        // alpha again: its parked worker comes back (same process), beta's is parked in turn.
        try await generate("alpha")
        list = try await waitForWorkers(server) { worker("beta", in: $0)?["state"] == "parked" }
        let back = try #require(worker("alpha", in: list))
        #expect(back["id"] == alpha["id"] && back["pid"] == alpha["pid"] && back["tier"] == "gpu" && back["reloads"] == 1)
        #expect(try await server.json(.GET, "http://127.0.0.1:\(alphaPort)/internal/ping").1["loaded"] == true)
        // gamma: RAM holds two parked workers (4000 MiB each), so alpha parks too and nothing stops.
        try await generate("gamma")
        list = try await waitForWorkers(server) { worker("alpha", in: $0)?["state"] == "parked" }
        #expect(list.count == 3 && list.filter { $0["tier"] == "ram" }.count == 2)
        let (_, after) = try await server.json(.GET, "/workers")
        #expect(after["coldStarts"] == ["alpha.safetensors": 1, "beta.safetensors": 1, "gamma.safetensors": 1])
        #expect(!server.log.contains("stopping worker"), "no process was stopped")
    }

    @Test func checkpointsAreReadAheadOfTheirWorkers() async throws {
        // One slot: while alpha's long task runs, beta and gamma wait with no worker; their checkpoints are
        // read into the page cache meanwhile, and alpha's as its worker started.
        let server = try await ServerProcess(config: """
            scheduler:
              maxInstances: 1
              readAheadMiB: 64
            workers:
              reference: {stepMilliseconds: 40, minimumStepMilliseconds: 40}
            """, models: Self.threeModels)
        defer { server.destroy() }
        let alpha = try await submit(server, model: "alpha", steps: 25)
        let queued = [try await submit(server, model: "beta", steps: 1), try await submit(server, model: "gamma", steps: 1)]
        func readAhead(_ model: String, _ reason: String) -> Bool {
            server.log.split(separator: "\n").contains { $0.contains("checkpoint read ahead") && $0.contains("/\(model).safetensors") && $0.contains("reason=\(reason)") }
        }
        let deadline = ContinuousClock.now + .seconds(20)
        while !(readAhead("beta", "queued") && readAhead("gamma", "queued")), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let alphaStatus = try await server.json(.GET, "/tasks/\(alpha)/result").1["status"]
        #expect(alphaStatus == "waiting" || alphaStatus == "running", "read while alpha still held the slot: \(String(describing: alphaStatus))")
        #expect(readAhead("alpha", "starting") && readAhead("beta", "queued") && readAhead("gamma", "queued"), "\(server.log)")
        for id in [alpha] + queued { #expect(try await server.waitForTask(id)["status"] == "succeeded") }
        let metrics = String(decoding: try await server.request(.GET, "/metrics").1, as: UTF8.self)
        #expect(metrics.contains(#"sdbox_checkpoint_read_ahead_bytes_total{reason="queued"} \#(2 * DemoCheckpoint.contents().count)"#), "\(metrics)")
    }

    @Test func aDefaultMinimumKeepsEveryPoolWarm() async throws {
        // `scheduler.pool.minInstances` is every pool's default: each known checkpoint's pool starts a worker
        // with no task.
        let server = try await ServerProcess(config: """
            scheduler:
              maxInstances: 3
              pool: {minInstances: 1}
            workers:
              reference: {stepMilliseconds: 5, minimumStepMilliseconds: 5}
            """, models: Self.threeModels)
        defer { server.destroy() }
        let warm = try await waitForWorkers(server) { $0.filter { $0["state"] == "ready" }.count == 3 }
        #expect(Set(warm.compactMap { $0["model"]?.stringValue }) == Set(Self.threeModels.keys))
    }

    @Test func idleWorkersScaleToZeroAndModelsUnload() async throws {
        let server = try await ServerProcess(config: """
            scheduler:
              pool: {idleTimeoutSeconds: 1}
            workers:
              reference: {stepMilliseconds: 2, minimumStepMilliseconds: 1}
            """)
        defer { server.destroy() }
        let (status, _) = try await server.json(.POST, "/txt2img", ["steps": 2, "width": 64, "height": 64])
        #expect(status == 200)
        let (_, loaded) = try await server.json(.GET, "/models")
        #expect(loaded.arrayValue?.first?["status"] == "loaded")
        _ = try await waitForWorkers(server, timeout: .seconds(20)) { $0.isEmpty }
        let (_, unloaded) = try await server.json(.GET, "/models")
        #expect(unloaded.arrayValue?.first?["status"] == "unloaded")
        #expect(server.workerPIDs().isEmpty, "the worker process is gone")
        #expect(server.log.contains("idle timeout"))
    }

    @Test func workersArePlacedOnConfiguredGPUsWithinTheirMemory() async throws {
        let server = try await ServerProcess(config: """
            scheduler:
              maxInstances: 4
              gpus:
                - {index: 0, memoryMiB: 10000, name: Test GPU 0}
                - {index: 1, memoryMiB: 7000, name: Test GPU 1}
              pool: {gpuMemoryMiB: 6000}
            workers:
              reference: {stepMilliseconds: 20, minimumStepMilliseconds: 5}
            """, models: Self.threeModels)
        defer { server.destroy() }
        // Tasks of 2 s, so that the first two workers still run theirs while they are looked at: one that
        // finished would give its GPU to gamma's worker and be gone.
        let ids = [
            try await submit(server, model: "alpha", steps: 100), try await submit(server, model: "beta", steps: 100),
            try await submit(server, model: "gamma", steps: 100),
        ]
        let placed = try await waitForWorkers(server) { $0.count == 2 && $0.allSatisfy { $0["pid"]?.integerValue != nil } }
        #expect(Set(placed.compactMap { $0["gpu"]?.integerValue }) == [0, 1], "one 6000 MiB worker per GPU; a third fits nowhere")
        let (_, status) = try await server.json(.GET, "/workers")
        #expect(status["gpuSource"] == "configuration")
        #expect(status["referenceWorker"] == true, "the reference worker is the engine, and /workers says so")
        let gpus = status["gpus"]?.arrayValue ?? []
        #expect(gpus.map { $0["plannedMiB"] } == [6000, 6000])
        #expect(gpus.first?["name"] == "Test GPU 0")
        // Each worker sees only its own GPU.
        for worker in placed {
            let pid = try #require(worker["pid"]?.integerValue)
            let environment = String(decoding: FileManager.default.contents(atPath: "/proc/\(pid)/environ") ?? Data(), as: UTF8.self)
                .split(separator: "\0")
            #expect(environment.contains("CUDA_VISIBLE_DEVICES=\(worker["gpu"]!.integerValue!)"), "\(worker)")
        }
        for id in ids { #expect(try await server.waitForTask(id)["status"] == "succeeded") }
    }

    @Test func queuedTasksShowTheirPlaceAndAnEstimate() async throws {
        let server = try await ServerProcess(config: """
            scheduler:
              maxInstances: 1
            workers:
              reference: {stepMilliseconds: 20, minimumStepMilliseconds: 5}
            """)
        defer { server.destroy() }
        // A first task teaches the scheduler the model's pace.
        #expect(try await server.json(.POST, "/txt2img", ["steps": 5, "width": 512, "height": 512]).0 == 200)
        var ids: [String] = []
        for _ in 0..<3 { ids.append(try await submit(server, model: "demo")) }
        let (_, progress) = try await server.json(.GET, "/tasks/\(ids[2])/progress")
        #expect(progress["status"] == "waiting")
        #expect(progress["queuePosition"]?.integerValue ?? 0 >= 1)
        #expect(progress["etaRelative"]?.doubleValue ?? 0 > 0, "\(progress)")
        for id in ids { #expect(try await server.waitForTask(id)["status"] == "succeeded") }
    }

    @Test func poolsAreChangedAndDeletedThroughTheOriginalsAPI() async throws {
        let server = try await ServerProcess(config: """
            workers:
              reference: {stepMilliseconds: 20, minimumStepMilliseconds: 5}
            """, models: Self.threeModels)
        defer { server.destroy() }
        let (_, listed) = try await server.json(.GET, "/list/sdapi/functions")
        let functions = listed["functions"]?.arrayValue ?? []
        #expect(functions.count == 3)
        let alphaFunction = try #require(functions.first { $0["model"] == "alpha.safetensors" }?["functionName"]?.stringValue)

        // minInstances 1 keeps a warm worker with no task at all; cloud-only fields are reported ignored.
        let (updated, answer) = try await server.json(
            .POST, "/batch_update_sd_resource",
            ["models": ["alpha.safetensors"], "minInstances": 1, "gpuMemorySize": 4096, "env": ["EXTRA": "1"], "cpu": 8, "timeout": 120]
        )
        #expect(updated == 200, "\(answer)")
        #expect(answer["status"] == "success")
        #expect(answer["ignored"] == ["cpu"])
        let warm = try await waitForWorkers(server) { $0.contains { $0["model"] == "alpha.safetensors" && $0["state"] == "ready" } }
        let pid = try #require(warm.first?["pid"]?.integerValue)
        let environment = String(decoding: FileManager.default.contents(atPath: "/proc/\(pid)/environ") ?? Data(), as: UTF8.self)
        #expect(environment.split(separator: "\0").contains("EXTRA=1"))
        let (_, relisted) = try await server.json(.GET, "/list/sdapi/functions")
        let alphaSettings = relisted["functions"]?.arrayValue?.first { $0["model"] == "alpha.safetensors" }?["settings"]
        #expect(alphaSettings?["minInstances"] == 1)
        #expect(alphaSettings?["taskTimeoutSeconds"] == 120)

        // Bad updates are refused field by field.
        let (badType, badTypeAnswer) = try await server.json(.POST, "/batch_update_sd_resource", ["minInstances": "many"])
        #expect(badType == 400)
        #expect(badTypeAnswer["field"] == "minInstances")
        let (unknownField, _) = try await server.json(.POST, "/batch_update_sd_resource", ["minInstanse": 1])
        #expect(unknownField == 400)
        let (unknownModel, unknownAnswer) = try await server.json(.POST, "/batch_update_sd_resource", ["models": ["nope"], "maxInstances": 2])
        #expect(unknownModel == 400)
        #expect(unknownAnswer["status"] == "fail")
        #expect(unknownAnswer["failFuncList"]?.arrayValue?.count == 1)
        let (unknownProfile, _) = try await server.json(.POST, "/batch_update_sd_resource", ["models": ["alpha"], "image": "no-such-profile"])
        #expect(unknownProfile == 400)
        let (unbalanced, unbalancedAnswer) = try await server.json(.POST, "/batch_update_sd_resource", ["models": ["beta"], "extraArgs": "--x 'open"])
        #expect(unbalanced == 400 && unbalancedAnswer["field"] == "extraArgs")

        // The original's own resource.py body: extraArgs as one string, a container image and cloud-only
        // fields (ignored and listed); env is merged into the pool's. The pool's workers start with those
        // arguments (the reference worker ignores A1111's flags, as A1111 variants do each other's).
        for env: JSONValue in [["FIRST": "1", "GONE": "x"], ["SECOND": "two words", "GONE": nil]] {
            let (status, answer) = try await server.json(.POST, "/batch_update_sd_resource", [
                "models": ["beta.safetensors"], "extraArgs": "--api --nowebui --sd-name 'a b'", "env": env, "cpu": 8, "memorySize": 32768,
                "image": "registry.example.com/sd/a1111:v1", "instanceType": "fc.gpu.tesla.1", "diskSize": 10240,
                "vpcConfig": ["vpcId": "vpc-1", "vSwitchIds": ["vsw-1"], "securityGroupId": "sg-1"],
                "ossMountConfig": ["mountPoints": [["bucketName": "b", "bucketPath": "/", "mountDir": "/mnt/oss"]]],
            ])
            #expect(status == 200, "\(answer)")
            #expect(answer["ignored"] == ["cpu", "diskSize", "image", "instanceType", "memorySize", "ossMountConfig", "vpcConfig"], "\(answer)")
        }
        let betaTask = try await submit(server, model: "beta", steps: 2, size: 64)
        #expect(try await server.waitForTask(betaTask)["status"] == "succeeded")
        let betaWorker = try #require(try await waitForWorkers(server) { $0.contains { $0["model"] == "beta.safetensors" } }.first { $0["model"] == "beta.safetensors" })
        let betaPID = try #require(betaWorker["pid"]?.integerValue)
        let arguments = (FileManager.default.contents(atPath: "/proc/\(betaPID)/cmdline") ?? Data()).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        #expect(arguments.suffix(4) == ["--api", "--nowebui", "--sd-name", "a b"], "\(arguments)")
        let betaEnvironment = String(decoding: FileManager.default.contents(atPath: "/proc/\(betaPID)/environ") ?? Data(), as: UTF8.self).split(separator: "\0")
        #expect(betaEnvironment.contains("FIRST=1") && betaEnvironment.contains("SECOND=two words") && !betaEnvironment.contains("GONE=x"))

        // Deleting the pool: a running task finishes, queued ones fail with a clear reason, workers stop.
        let running = try await submit(server, model: "alpha", steps: 40)
        while try await server.json(.GET, "/tasks/\(running)/progress").1["status"] != "running" {
            try await Task.sleep(for: .milliseconds(20))
        }
        let queued = try await submit(server, model: "alpha", steps: 40)
        let (deleted, deleteAnswer) = try await server.json(.POST, "/del/sd/functions", ["functions": .array([.string(alphaFunction)])])
        #expect(deleted == 200, "\(deleteAnswer)")
        #expect(deleteAnswer["status"] == "success")
        let queuedResult = try await server.waitForTask(queued)
        #expect(queuedResult["status"] == "failed")
        #expect(queuedResult["error"]?.stringValue?.contains("was deleted") == true)
        #expect(try await server.waitForTask(running)["status"] == "succeeded")
        _ = try await waitForWorkers(server) { !$0.contains { $0["model"] == "alpha.safetensors" } }
        let (_, afterDelete) = try await server.json(.GET, "/list/sdapi/functions")
        #expect(afterDelete["functions"]?.arrayValue?.contains { $0["model"] == "alpha.safetensors" } == false)
        let (missing, missingAnswer) = try await server.json(.POST, "/del/sd/functions", ["functions": ["sd_0000000000000000"]])
        #expect(missing == 404)
        #expect(missingAnswer["status"] == "fail")
    }
}

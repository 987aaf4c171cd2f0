import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

@Suite(.serialized, .timeLimit(.minutes(2))) struct RobustnessTests {
    @Test func badInputGetsClearErrors() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nmaxBodyBytes: 4096\n")
        defer { server.destroy() }

        let (badJSON, parse) = try jsonOf(await server.request(.POST, "/txt2img", body: Data("{\"steps\": 8,".utf8)))
        #expect(badJSON == 400)
        #expect(parse["error"] == "invalid JSON")

        let (wrongType, typed) = try await server.json(.POST, "/txt2img", ["steps": "eight"])
        #expect(wrongType == 400)
        #expect(typed["field"] == "steps")
        #expect(typed["detail"]?.stringValue?.contains("'steps'") == true)

        let (unknownModel, missing) = try await server.json(.POST, "/txt2img", ["stable_diffusion_model": "nope.safetensors"])
        #expect(unknownModel == 404)
        #expect(missing["detail"]?.stringValue?.contains("nope.safetensors") == true)

        let (tooLarge, large) = try await server.json(.POST, "/txt2img", ["prompt": .string(String(repeating: "x", count: 10_000))])
        #expect(tooLarge == 413)
        #expect(large["error"] == "request body too large")

        #expect(try await server.json(.GET, "/tasks/doesnotexist/result").0 == 404)
        #expect(try await server.json(.GET, "/tasks/..%2F..%2Fetc/result").0 == 404)
        #expect(try await server.json(.POST, "/tasks/doesnotexist/cancellation").0 == 404)
        // A path sdbox does not know goes to a worker, as the original forwards it; the worker's 404 comes back.
        let (noRoute, route) = try await server.json(.GET, "/no/such/route")
        #expect(noRoute == 404)
        #expect(route["detail"] == "Not Found")
        let (noEndpoint, endpoint) = try await server.json(.GET, "/sdapi/v1/no-such-endpoint")
        #expect(noEndpoint == 404 && endpoint["error"] == "not found", "sdbox's own 404 for /sdapi/v1")
        #expect(try await server.json(.GET, "/objects/../../etc/passwd?expires=9999999999&sig=00").0 >= 400)

        // Huge numbers, and unicode and traversal in names.
        #expect(try await server.json(.POST, "/txt2img", ["steps": .number(1e300)]).0 == 400)
        #expect(try await server.json(.POST, "/txt2img", ["steps": .integer(Int64.max)]).0 == 400)
        #expect(try await server.json(.POST, "/txt2img", ["stable_diffusion_model": "模型\u{0}../x"]).0 == 404)

        // Nothing above was recorded as a task, and the server still serves.
        #expect(try await server.json(.GET, "/tasks").1["tasks"] == [])
        #expect(try await server.json(.POST, "/txt2img", ["steps": 1, "width": 64, "height": 64]).1["status"] == "succeeded")
    }

    @Test func anImageOverTheFileLimitIsRefusedBeforeDecoding() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nimages:\n  maxInputMiB: 1\n")
        defer { server.destroy() }
        let huge = String(repeating: "A", count: 2 << 20)
        let (status, answer) = try await server.json(.POST, "/img2img", ["prompt": "x", "init_images": [.string(huge)]])
        #expect(status == 413, "\(answer)")
        #expect(answer["error"] == "image too large" && answer["field"] == "init_images[0]", "\(answer)")
        #expect(try await server.json(.GET, "/tasks").1["tasks"] == [])
    }

    @Test func aStalledRequestIsCutOffAndTheServerKeepsServing() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nrequestIdleTimeoutSeconds: 1\n")
        defer { server.destroy() }
        // A client that announces a body and then sends nothing more, as a slowloris attack does.
        let connection = try RawConnection(port: server.port)
        connection.send("POST /txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\":")
        // The server closes the connection: the read ends, rather than our own 30 s wait.
        #expect(await connection.readUntilClosed(seconds: 30) != nil, "the server did not close the stalled connection")
        #expect(try await server.json(.GET, "/tasks").1["tasks"] == [], "nothing was recorded")
        #expect(try await server.json(.POST, "/txt2img", ["steps": 1, "width": 64, "height": 64]).0 == 200)
    }

    @Test func modelsAndFunctionsAreListed() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let (_, models) = try await server.json(.GET, "/models")
        let demo = try #require(models.arrayValue?.first)
        #expect(demo["type"] == "stableDiffusion")
        #expect(demo["name"] == "demo.safetensors")
        #expect(demo["ossPath"]?.stringValue?.hasSuffix("/models/Stable-diffusion/demo.safetensors") == true)
        #expect(demo["etag"]?.stringValue?.count == 64)
        #expect(demo["status"] == "unloaded")
        #expect(demo["registeredTime"]?.stringValue != nil && demo["lastModificationTime"]?.stringValue != nil)

        _ = try await server.json(.POST, "/txt2img", ["steps": 1, "width": 64, "height": 64])
        #expect(try await server.json(.GET, "/models").1.arrayValue?.first?["status"] == "loaded")

        let (_, functions) = try await server.json(.GET, "/list/sdapi/functions")
        #expect(functions["status"] == "success")
        let function = try #require(functions["functions"]?.arrayValue?.first)
        #expect(function["model"] == "demo.safetensors")
        #expect(function["functionName"]?.stringValue?.hasPrefix("sd_") == true)
    }

    @Test func brokenCheckpointFailsWithTheWorkersReason() async throws {
        let server = try await ServerProcess(config: fastWorkers, models: ["broken.safetensors": Data("garbage".utf8)])
        defer { server.destroy() }
        let (status, answer) = try await server.json(.POST, "/txt2img", ["stable_diffusion_model": "broken", "steps": 1, "width": 64, "height": 64])
        #expect(status == 500)
        #expect(answer["status"] == "failed")
        #expect(answer["detail"]?.stringValue?.contains("failed to start") == true, "\(answer)")
        #expect(answer["detail"]?.stringValue?.contains("safetensors") == true, "\(answer)")
    }

    /// Another process listening on a worker's port before the worker binds it answers the readiness ping
    /// too. sdbox sees the listener is not its worker's, sends it no task, and after its tries fails the task
    /// saying why. The stranger here is the worker itself, started by the launch command in a session of its
    /// own (`setsid -f`); the same command in a profile that says another process listens for it
    /// (`ownsPort: false`) is trusted, and so is a worker the command leaves running in the background, in
    /// the process group sdbox made for it.
    @Test(arguments: [
        ("setsid -f {sdbox} worker --port {port} --checkpoint {checkpoint} --parent-pid {sdbox_pid}", true, false),
        ("setsid -f {sdbox} worker --port {port} --checkpoint {checkpoint} --parent-pid {sdbox_pid}", false, true),
        ("({sdbox} worker --port {port} --checkpoint {checkpoint} --parent-pid {sdbox_pid} &)", true, true),
    ])
    func aWorkersPortHeldByAnotherProcessGetsNoTask(start: String, ownsPort: Bool, served: Bool) async throws {
        let server = try await ServerProcess(config: """
            workers:
              profiles:
                launched:
                  command: [/bin/sh, -c, "\(start); exec sleep 600"]
                  ownsPort: \(ownsPort)
              defaultProfile: launched
            """, models: ["demo.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let (status, answer) = try await server.json(.POST, "/txt2img", ["steps": 1, "width": 64, "height": 64])
        if served {
            #expect(status == 200 && answer["status"] == "succeeded", "\(answer)")
        } else {
            #expect(status == 500, "\(server.log.split(separator: "\n").filter { $0.contains("worker") }.joined(separator: "\n"))")
            #expect(answer["detail"]?.stringValue?.contains("is held by another process") == true, "\(answer)")
            #expect(server.log.contains("a worker's port is held by another process"))
        }
    }

    @Test func crashedWorkerIsReplacedAndTheTaskRunsAgain() async throws {
        let server = try await ServerProcess(config: pacedWorkers)
        defer { server.destroy() }
        let (_, accepted) = try await server.json(
            .POST, "/txt2img", ["prompt": "crash", "steps": 50, "width": 512, "height": 512], headers: [("Request-Type", "async")]
        )
        let id = try #require(accepted["taskId"]?.stringValue)
        while try await server.json(.GET, "/tasks/\(id)/progress").1["state"]?["sampling_step"]?.integerValue ?? 0 < 2 {
            try await Task.sleep(for: .milliseconds(30))
        }
        let workers = server.workerPIDs()
        #expect(workers.count == 1)
        for pid in workers { kill(pid, SIGKILL) }

        let result = try await server.waitForTask(id)
        #expect(result["status"] == "succeeded", "\(result)")
        let (_, list) = try await server.json(.GET, "/tasks")
        #expect(list["tasks"]?.arrayValue?.first?["attempts"] == 2)
        #expect(server.workerPIDs() != workers)
    }

    @Test func hungWorkerIsKilledAndTheTaskRunsAgain() async throws {
        let server = try await ServerProcess(config: """
            scheduler: {maxInstances: 1, livenessSeconds: 1, livenessFailures: 2}
            workers:
              reference: {stepMilliseconds: 20, minimumStepMilliseconds: 5}
            """)
        defer { server.destroy() }
        let (_, accepted) = try await server.json(
            .POST, "/txt2img", ["prompt": "hang", "steps": 50, "width": 512, "height": 512], headers: [("Request-Type", "async")]
        )
        let id = try #require(accepted["taskId"]?.stringValue)
        while try await server.json(.GET, "/tasks/\(id)/progress").1["state"]?["sampling_step"]?.integerValue ?? 0 < 2 {
            try await Task.sleep(for: .milliseconds(30))
        }
        // The worker is alive but answers nothing, as a wedged GPU driver would leave it.
        let workers = server.workerPIDs()
        #expect(workers.count == 1)
        for pid in workers { kill(pid, SIGSTOP) }

        let result = try await server.waitForTask(id)
        #expect(result["status"] == "succeeded", "\(result)")
        #expect(try await server.json(.GET, "/tasks").1["tasks"]?.arrayValue?.first?["attempts"] == 2)
        #expect(server.log.contains("worker stopped answering"))
        for pid in workers { #expect(kill(pid, 0) != 0, "the hung worker was killed") }
    }

    @Test func restartKeepsEveryTaskAndRunsUnfinishedOnes() async throws {
        let server = try await ServerProcess(config: pacedWorkers)
        defer { server.destroy() }
        var ids: [String] = []
        for index in 0..<3 {
            let (_, accepted) = try await server.json(
                .POST, "/txt2img", ["prompt": .string("task \(index)"), "steps": 40, "width": 512, "height": 512],
                headers: [("Request-Type", "async")]
            )
            ids.append(try #require(accepted["taskId"]?.stringValue))
        }
        while try await server.json(.GET, "/tasks/\(ids[0])/progress").1["state"]?["sampling_step"]?.integerValue ?? 0 < 2 {
            try await Task.sleep(for: .milliseconds(30))
        }
        // sdbox dies without any chance to clean up.
        await server.stop(signal: SIGKILL)
        try await server.start()

        for id in ids {
            let result = try await server.waitForTask(id)
            #expect(result["status"] == "succeeded", "\(id): \(result)")
        }
        let (_, list) = try await server.json(.GET, "/tasks")
        let attempts = Dictionary(uniqueKeysWithValues: (list["tasks"]?.arrayValue ?? []).map { ($0["taskId"]!.stringValue!, $0["attempts"]!.integerValue!) })
        #expect(attempts[ids[0]] == 2, "the running task ran again")
        #expect(attempts[ids[1]] == 1 && attempts[ids[2]] == 1, "queued tasks ran once")
        // The worker the killed sdbox left behind is gone: only the new run's worker remains.
        #expect(server.workerPIDs().count == 1)
    }

    @Test func gracefulShutdownStopsWorkers() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        _ = try await server.json(.POST, "/txt2img", ["steps": 1, "width": 64, "height": 64])
        let workers = server.workerPIDs()
        #expect(workers.count == 1)
        await server.stop(signal: SIGTERM)
        #expect(server.log.contains("scheduler stopped"))
        try await Task.sleep(for: .milliseconds(200))
        #expect(server.workerPIDs().isEmpty)
    }
}

func jsonOf(_ response: (Int, Data)) throws -> (Int, JSONValue) {
    (response.0, try JSONValue(parsing: response.1))
}

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDBoxCore
import Testing

/// A1111-compatible servers sdbox did not start (`workers.remote`), played by reference workers the test
/// starts itself on loopback: they join the pool of the checkpoint they hold, beside local workers.
@Suite(.serialized, .timeLimit(.minutes(2))) struct RemoteWorkerTests {
    /// A reference worker started by the test, standing for an A1111 server on another machine.
    final class RemoteServer: @unchecked Sendable {
        // Safety: `pid` and `port` are only changed by init/start/kill, called from the one test task.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-remote-\(UUID().uuidString)").path
        private(set) var port = 0
        let options: [String]
        private(set) var pid: pid_t = 0

        /// Holding `checkpoint`, with `others` beside it to switch to.
        init(checkpoint: String, others: [String] = [], stepMilliseconds: Int, apiAuth: String? = nil) async throws {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for name in [checkpoint] + others { try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: folder + "/" + name)) }
            options = ["--checkpoint", folder + "/" + checkpoint, "--step-ms", "\(stepMilliseconds)", "--min-step-ms", "\(stepMilliseconds)"]
                + (apiAuth.map { ["--api-auth", $0] } ?? [])
            (pid, port) = try await spawnOnFreePort(output: folder + "/worker.log") { port in
                [ServerProcess.binary, "worker", "--port", "\(port)"] + options
            }
        }

        var url: String { "http://127.0.0.1:\(port)" }

        /// Starts the worker again on its port, and waits until it answers.
        func start() async throws {
            pid = try spawn([ServerProcess.binary, "worker", "--port", "\(port)"] + options, output: folder + "/worker.log")
            do {
                try await waitUntilAnswering(pid: pid, url: url)
            } catch is HelperExited {
                pid = 0
                throw TestFailure("the remote worker ended before it answered on port \(port)")
            }
        }

        func kill() {
            guard pid > 0 else { return }
            killAndReap(pid)
            pid = 0
        }

        func destroy() {
            kill()
            try? FileManager.default.removeItem(atPath: folder)
        }
    }

    static let alpha = ["alpha.safetensors": DemoCheckpoint.contents()]

    /// The first slot of the remote worker `name` in a `/workers` answer.
    static func remote(_ name: String, in answer: JSONValue) -> JSONValue? {
        answer["workers"]?.arrayValue?.first { $0["remote"]?["name"]?.stringValue == name }
    }

    func remoteWorker(_ server: ServerProcess, named name: String) async throws -> JSONValue? {
        Self.remote(name, in: try await server.json(.GET, "/workers").1)
    }

    func waitForRemote(_ server: ServerProcess, named name: String, timeout: Duration = .seconds(30), _ condition: (JSONValue) -> Bool) async throws -> JSONValue {
        let answer = try await server.waitForWorkers(timeout: timeout) { answer in Self.remote(name, in: answer).map(condition) ?? false }
        return try #require(Self.remote(name, in: answer))
    }

    /// sdbox serving alpha, with quick local reference workers and `remote` as its remote worker `gpu-pc`,
    /// once that is ready.
    func serverWithReadyRemote(_ remote: RemoteServer, scheduler: String = "{}") async throws -> ServerProcess {
        let server = try await ServerProcess(config: """
            scheduler: \(scheduler)
            workers:
              reference: {stepMilliseconds: 5, minimumStepMilliseconds: 5}
              remote:
                - {name: gpu-pc, url: "\(remote.url)"}
            """, models: Self.alpha)
        do {
            _ = try await waitForRemote(server, named: "gpu-pc") { $0["state"] == "ready" }
        } catch {
            server.destroy()
            throw error
        }
        return server
    }

    func submit(_ server: ServerProcess, model: String = "alpha", steps: Int) async throws -> String {
        let (status, accepted) = try await server.json(
            .POST, "/txt2img", ["stable_diffusion_model": .string(model), "prompt": "p", "steps": .integer(Int64(steps)), "width": 64, "height": 64],
            headers: [("Request-Type", "async")]
        )
        #expect(status == 200, "\(accepted)")
        return try #require(accepted["taskId"]?.stringValue)
    }

    @Test func aPoolIsServedByALocalAndARemoteWorkerTogether() async throws {
        let remote = try await RemoteServer(checkpoint: "alpha.safetensors", stepMilliseconds: 20)
        defer { remote.destroy() }
        let server = try await ServerProcess(config: """
            scheduler:
              maxInstances: 1
              pool: {maxInstances: 2}
            workers:
              reference: {stepMilliseconds: 20, minimumStepMilliseconds: 20}
              remote:
                - {name: gpu-pc, url: "\(remote.url)", gpuMemoryMiB: 12288}
            """, models: Self.alpha)
        defer { server.destroy() }
        let ready = try await waitForRemote(server, named: "gpu-pc") { $0["state"] == "ready" }
        // The pool kept at two workers: the remote one and a local one, both ready before the tasks come.
        #expect(try await server.json(.POST, "/batch_update_sd_resource", ["models": ["alpha.safetensors"], "minInstances": 2]).0 == 200)
        _ = try await server.waitForWorkers { ($0["workers"]?.arrayValue ?? []).contains { $0["remote"] == nil && $0["state"] == "ready" } }
        #expect(ready["model"] == "alpha.safetensors" && ready["remote"]?["url"]?.stringValue == remote.url)
        #expect(ready["remote"]?["checkpoints"] == ["alpha.safetensors"] && ready["pid"] == nil)
        let ids = try await (0..<6).asyncMap { _ in try await submit(server, steps: 10) }
        for id in ids { #expect(try await server.waitForTask(id)["status"] == "succeeded") }
        let workers = try await server.json(.GET, "/workers").1["workers"]?.arrayValue ?? []
        let served = Dictionary(workers.map { ($0["remote"] == nil ? "local" : "remote", $0["tasksServed"]?.integerValue ?? 0) }) { $0 + $1 }
        #expect(served["remote", default: 0] >= 1 && served["local", default: 0] >= 1, "both served: \(served)")
        #expect(served["remote", default: 0] + served["local", default: 0] == 6)
        let metrics = String(decoding: try await server.request(.GET, "/metrics").1, as: UTF8.self)
        #expect(metrics.contains(#"sdbox_remote_worker_up{name="gpu-pc"} 1"#))
        #expect(metrics.contains(#"sdbox_remote_worker_checkpoint{model="alpha.safetensors",name="gpu-pc"} 1"#) || metrics.contains(#"sdbox_remote_worker_checkpoint{name="gpu-pc",model="alpha.safetensors"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"sdbox_remote_worker_tasks_served{name="gpu-pc"} \#(served["remote", default: 0])"#))
    }

    @Test func aRemoteWorkerWithSeveralSlotsTakesThatManyTasksAtOnce() async throws {
        let remote = try await RemoteServer(checkpoint: "alpha.safetensors", stepMilliseconds: 100)
        defer { remote.destroy() }
        let server = try await ServerProcess(config: """
            scheduler:
              pool: {maxInstances: 2}
            workers:
              reference: {stepMilliseconds: 5, minimumStepMilliseconds: 5}
              remote:
                - {name: big-gpu, url: "\(remote.url)", maxTasks: 2}
            """, models: Self.alpha)
        defer { server.destroy() }
        func slots(_ answer: JSONValue) -> [JSONValue] { (answer["workers"]?.arrayValue ?? []).filter { $0["remote"]?["name"] == "big-gpu" } }
        let ready = slots(try await server.waitForWorkers { slots($0).filter { $0["state"] == "ready" }.count == 2 })
        #expect(ready.compactMap { $0["remote"]?["slot"]?.integerValue }.sorted() == [1, 2])
        let ids = [try await submit(server, steps: 10), try await submit(server, steps: 10)]
        // Both slots busy at once, and never a local worker meanwhile.
        var sawLocal = false
        _ = try await server.waitForWorkers { answer in
            let workers = answer["workers"]?.arrayValue ?? []
            if workers.contains(where: { $0["remote"] == nil }) { sawLocal = true }
            return slots(answer).filter { $0["state"] == "busy" }.count == 2
        }
        #expect(!sawLocal, "the pool's cap of 2 is the server's two slots: no local worker")
        for id in ids { #expect(try await server.waitForTask(id)["status"] == "succeeded") }
        #expect(try await server.json(.POST, "/admin/workers/remote", ["name": "x", "url": "http://h", "maxTasks": 2, "switchModels": true]).0 == 400)
    }

    @Test func aTaskOnARemoteWorkerIsInterruptedWhenCancelled() async throws {
        let remote = try await RemoteServer(checkpoint: "alpha.safetensors", stepMilliseconds: 200)
        defer { remote.destroy() }
        let server = try await serverWithReadyRemote(remote)
        defer { server.destroy() }
        let id = try await submit(server, steps: 100)
        _ = try await waitForRemote(server, named: "gpu-pc") { $0["taskId"]?.stringValue == id }
        // Its progress comes from the remote worker.
        let deadline = ContinuousClock.now + .seconds(10)
        var progress: JSONValue = .null
        while ContinuousClock.now < deadline {
            progress = try await server.json(.GET, "/tasks/\(id)/progress").1
            if (progress["progress"]?.doubleValue ?? 0) > 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect((progress["progress"]?.doubleValue ?? 0) > 0, "\(progress)")
        #expect(try await server.json(.POST, "/tasks/\(id)/cancellation").0 == 200)
        #expect(try await server.waitForTask(id, timeout: .seconds(10))["status"] == "cancelled")
        _ = try await waitForRemote(server, named: "gpu-pc") { $0["state"] == "ready" }
    }

    @Test func aRemoteWorkerLostMidTaskLosesNothingAndIsTakenBackWhenItAnswers() async throws {
        let remote = try await RemoteServer(checkpoint: "alpha.safetensors", stepMilliseconds: 300)
        defer { remote.destroy() }
        let server = try await serverWithReadyRemote(remote, scheduler: "{maxInstances: 1, livenessSeconds: 1}")
        defer { server.destroy() }
        let id = try await submit(server, steps: 10)
        _ = try await waitForRemote(server, named: "gpu-pc") { $0["state"] == "busy" && $0["taskId"]?.stringValue == id }
        remote.kill()
        let task = try await server.waitForTask(id)
        #expect(task["status"] == "succeeded", "retried on a local worker: \(task)")
        _ = try await waitForRemote(server, named: "gpu-pc") { $0["state"] == "down" }
        #expect(server.log.contains("worker lost a task; queuing it again"))
        // It answers again: probed with backoff, it is back in the pool.
        try await remote.start()
        _ = try await waitForRemote(server, named: "gpu-pc") { $0["state"] == "ready" }
    }

    @Test func credentialsAreSentAndNeverShownAndAWrongEndpointStaysDown() async throws {
        let remote = try await RemoteServer(checkpoint: "alpha.safetensors", stepMilliseconds: 5, apiAuth: "studio:s3cret-pass")
        defer { remote.destroy() }
        let nothing = try #require(FreePort.allocate())
        let server = try await ServerProcess(config: """
            workers:
              reference: {stepMilliseconds: 5, minimumStepMilliseconds: 5}
              remote:
                - {name: locked, url: "\(remote.url)", basicAuth: "studio:s3cret-pass"}
                - {name: wrong-password, url: "\(remote.url)", basicAuth: "studio:guess"}
                - {name: in-url, url: "http://studio:s3cret-pass@127.0.0.1:\(nothing)"}
            """, models: Self.alpha)
        defer { server.destroy() }
        _ = try await waitForRemote(server, named: "locked") { $0["state"] == "ready" && $0["model"] == "alpha.safetensors" }
        let (status, answer) = try await server.json(.POST, "/sdapi/v1/txt2img", ["prompt": "p", "steps": 2, "width": 64, "height": 64])
        #expect(status == 200 && answer["images"]?.arrayValue?.count == 1)
        #expect(answer["parameters"]?["override_settings"]?["sd_model_checkpoint"] == "alpha.safetensors", "a shared server is told the checkpoint")
        #expect(try await remoteWorker(server, named: "locked")?["tasksServed"] == 1, "the remote worker with the right password ran it")
        let refused = try await remoteWorker(server, named: "wrong-password")
        #expect(refused?["state"] == "down")
        #expect(refused?["remote"]?["error"]?.stringValue?.contains("401") == true, "the reason is shown: \(String(describing: refused))")
        let inURL = try await remoteWorker(server, named: "in-url")
        #expect(inURL?["state"] == "down" && inURL?["remote"]?["url"]?.stringValue == "http://***@127.0.0.1:\(nothing)")
        let (_, raw) = try await server.request(.GET, "/workers")
        #expect(!String(decoding: raw, as: UTF8.self).contains("s3cret"), "no password in /workers")
        #expect(!server.log.contains("s3cret"), "no password in the log")
    }
}

extension RemoteWorkerTests {
    @Test func aRemoteWorkerThatMaySwitchServesAModelWithNoRoomHere() async throws {
        // The one local slot runs gamma's long task; beta's task goes to the remote server, which holds
        // alpha and has beta: sdbox switches its checkpoint, as a cold start.
        let remote = try await RemoteServer(checkpoint: "alpha.safetensors", others: ["beta.safetensors"], stepMilliseconds: 5)
        defer { remote.destroy() }
        let server = try await ServerProcess(config: """
            scheduler:
              maxInstances: 1
            workers:
              reference: {stepMilliseconds: 60, minimumStepMilliseconds: 60}
              remote:
                - {name: gpu-pc, url: "\(remote.url)", switchModels: true}
            """, models: ["alpha.safetensors": DemoCheckpoint.contents(), "beta.safetensors": DemoCheckpoint.contents(), "gamma.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let ready = try await waitForRemote(server, named: "gpu-pc") { $0["state"] == "ready" }
        #expect(ready["remote"]?["checkpoints"] == ["alpha.safetensors", "beta.safetensors"])
        let gamma = try await submit(server, model: "gamma", steps: 40)
        let beta = try await submit(server, model: "beta", steps: 2)
        #expect(try await server.waitForTask(beta)["status"] == "succeeded")
        let gammaStatus = try await server.json(.GET, "/tasks/\(gamma)/result").1["status"]
        #expect(gammaStatus == "waiting" || gammaStatus == "running", "beta did not wait for the local slot")
        let switched = try await waitForRemote(server, named: "gpu-pc") { $0["model"] == "beta.safetensors" }
        #expect(switched["tasksServed"] == 1)
        #expect(server.log.contains("remote worker switched checkpoints"))
        #expect(try await server.json(.GET, "/workers").1["coldStarts"]?["beta.safetensors"] == 1, "a switch counts as a cold start")
        let options = try await server.json(.GET, remote.url + "/sdapi/v1/options").1
        #expect(options["sd_model_checkpoint"]?.stringValue?.hasPrefix("beta.safetensors [") == true)
        #expect(try await server.waitForTask(gamma)["status"] == "succeeded")
    }
}

extension RemoteWorkerTests {
    @Test func remoteWorkersAreAddedAndRemovedAtRunTimeAndKeptAcrossRestarts() async throws {
        let remote = try await RemoteServer(checkpoint: "alpha.safetensors", stepMilliseconds: 5)
        defer { remote.destroy() }
        let nothing = try #require(FreePort.allocate())
        let server = try await ServerProcess(config: """
            workers:
              reference: {stepMilliseconds: 5, minimumStepMilliseconds: 5}
              remote:
                - {name: from-file, url: "http://127.0.0.1:\(nothing)"}
            """, models: Self.alpha)
        defer { server.destroy() }
        let (added, answer) = try await server.json(.POST, "/admin/workers/remote", ["name": "gpu-pc", "url": .string(remote.url), "basicAuth": "studio:hunter2", "gpuMemoryMiB": 24576])
        #expect(added == 201 && answer["basicAuth"] == "studio:***" && answer["source"] == "runtime", "\(answer)")
        _ = try await waitForRemote(server, named: "gpu-pc") { $0["state"] == "ready" && $0["model"] == "alpha.safetensors" }
        let (listed, list) = try await server.request(.GET, "/admin/workers/remote")
        #expect(listed == 200 && !String(decoding: list, as: UTF8.self).contains("hunter2"))
        let sources = try JSONValue(parsing: list)["remoteWorkers"]?.arrayValue?.compactMap { $0["source"]?.stringValue }
        #expect(sources == ["configuration", "runtime"])
        // Refusals, each with the reason.
        #expect(try await server.json(.POST, "/admin/workers/remote", ["name": "x", "url": "ftp://host"]).0 == 400)
        #expect(try await server.json(.POST, "/admin/workers/remote", ["name": "x", "url": "http://h", "maxTasks": 20]).1["field"] == "maxTasks")
        #expect(try await server.json(.POST, "/admin/workers/remote", ["name": "x", "url": "http://h", "slots": 2]).1["field"] == "slots")
        #expect(try await server.json(.POST, "/admin/workers/remote", ["name": "from-file", "url": "http://h"]).0 == 409)
        #expect(try await server.json(.DELETE, "/admin/workers/remote/from-file").0 == 409)
        #expect(try await server.json(.DELETE, "/admin/workers/remote/nobody").0 == 404)
        // Kept across a restart.
        await server.stop()
        try await server.start()
        _ = try await waitForRemote(server, named: "gpu-pc") { $0["state"] == "ready" }
        // Removed: gone now and after the next restart.
        #expect(try await server.json(.DELETE, "/admin/workers/remote/gpu-pc").0 == 200)
        #expect(try await remoteWorker(server, named: "gpu-pc") == nil)
        await server.stop()
        try await server.start()
        #expect(try await remoteWorker(server, named: "gpu-pc") == nil)
        #expect(try await remoteWorker(server, named: "from-file")?["state"] == "down")
    }
}

extension RemoteWorkerTests {
    @Test func anHTTPSServerWithAnUntrustedCertificateIsRefused() async throws {
        // openssl's test server with a self-signed certificate stands for a remote worker behind TLS.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let made = try await runProgram([
            "/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-days", "1",
            "-keyout", folder + "/key.pem", "-out", folder + "/cert.pem",
        ])
        #expect(made.status == 0, "\(made.output)")
        let port = try #require(FreePort.allocate())
        let tls = try spawn(
            ["/usr/bin/openssl", "s_server", "-accept", "\(port)", "-cert", folder + "/cert.pem", "-key", folder + "/key.pem", "-www", "-quiet"],
            output: folder + "/s_server.log"
        )
        defer { killAndReap(tls) }
        let server = try await ServerProcess(config: """
            workers:
              remote:
                - {name: behind-tls, url: "https://127.0.0.1:\(port)"}
            """, models: Self.alpha)
        defer { server.destroy() }
        let refused = try await waitForRemote(server, named: "behind-tls") { $0["remote"]?["error"]?.stringValue != nil }
        let error = refused["remote"]?["error"]?.stringValue ?? ""
        #expect(refused["state"] == "down")
        #expect(error.localizedCaseInsensitiveContains("certificate") || error.localizedCaseInsensitiveContains("handshake"), "\(error)")
    }
}

extension RemoteWorkerTests {
    @Test(.enabled(if: A1111StandIn.isAvailable, "FastAPI is not installed: run scripts/install-test-deps.sh (scripts/test does)"))
    func anA1111LikeServerIsSwitchedBetweenCheckpointsAndToldWhichOneToUse() async throws {
        // The FastAPI/uvicorn stand-in for A1111 holds alpha and has beta beside it.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-stand-in-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for name in ["alpha.safetensors", "beta.safetensors"] { try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: folder + "/" + name)) }
        let (standIn, port) = try await spawnOnFreePort(output: folder + "/stand-in.log") { port in
            [A1111StandIn.python, A1111StandIn.script, "--port", "\(port)", "--ckpt", folder + "/alpha.safetensors", "--step-ms", "5", "--load-ms", "100"]
        }
        defer { killAndReap(standIn) }
        let server = try await ServerProcess(config: """
            scheduler:
              maxInstances: 1
            workers:
              reference: {stepMilliseconds: 60, minimumStepMilliseconds: 60}
              remote:
                - {name: a1111, url: "http://127.0.0.1:\(port)", switchModels: true}
            """, models: ["alpha.safetensors": DemoCheckpoint.contents(), "beta.safetensors": DemoCheckpoint.contents(), "gamma.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let ready = try await waitForRemote(server, named: "a1111", timeout: .seconds(60)) { $0["state"] == "ready" }
        #expect(ready["model"] == "alpha.safetensors" && ready["remote"]?["checkpoints"] == ["alpha.safetensors", "beta.safetensors"])
        // alpha's task runs there, and names its checkpoint.
        let (status, answer) = try await server.json(.POST, "/sdapi/v1/txt2img", ["prompt": "p", "steps": 2, "width": 64, "height": 64, "override_settings": ["CLIP_stop_at_last_layers": 2]])
        #expect(status == 200 && answer["parameters"]?["override_settings"]?["sd_model_checkpoint"] == "alpha.safetensors")
        #expect(answer["parameters"]?["override_settings"]?["CLIP_stop_at_last_layers"] == 2, "the caller's own overrides travel too")
        // With the local slot busy with gamma, beta's task has the server switch to beta.
        let gamma = try await submit(server, model: "gamma", steps: 40)
        let beta = try await submit(server, model: "beta", steps: 2)
        #expect(try await server.waitForTask(beta)["status"] == "succeeded")
        let options = try await server.json(.GET, "http://127.0.0.1:\(port)/sdapi/v1/options").1
        #expect(options["sd_model_checkpoint"]?.stringValue?.hasPrefix("beta.safetensors [") == true, "\(options)")
        _ = try await waitForRemote(server, named: "a1111") { $0["model"] == "beta.safetensors" && $0["tasksServed"] == 2 }
        #expect(try await server.waitForTask(gamma)["status"] == "succeeded")
    }
}

extension RemoteWorkerTests {
    @Test(.enabled(if: SDCpp.isInstalled, "the sdcpp worker is not installed: set SDBOX_SDCPP_VENV (scripts/test does)"))
    func anSDCppWorkerStartedElsewhereServesAsARemoteWorker() async throws {
        // The stable-diffusion.cpp worker, started by the test as someone would on another machine.
        let (checkpoint, _) = try await SDCpp.models()
        let name = (checkpoint as NSString).lastPathComponent
        let port = try #require(FreePort.allocate())
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sdcpp-remote-\(UUID().uuidString).log").path
        let worker = try spawn([SDCpp.venv + "/bin/sdbox-sdcpp-worker", "--port", "\(port)", "--ckpt", checkpoint, "--threads", "1"], output: log)
        defer {
            killAndReap(worker)
            try? FileManager.default.removeItem(atPath: log)
        }
        let server = try await ServerProcess(config: """
            workers:
              remote:
                - {name: cpu-box, url: "http://127.0.0.1:\(port)"}
            """)
        defer { server.destroy() }
        let (registered, record) = try await server.json(.POST, "/admin/models/register", ["type": "stableDiffusion", "path": .string(checkpoint), "name": .string(name)])
        #expect(registered == 201 || registered == 200, "\(record)")
        _ = try await waitForRemote(server, named: "cpu-box", timeout: .seconds(90)) { $0["state"] == "ready" && $0["model"]?.stringValue == name }
        let (status, answer) = try await server.json(.POST, "/txt2img", [
            "stable_diffusion_model": .string(name), "prompt": "a red fox", "steps": 2, "width": 64, "height": 64, "cfg_scale": 1,
        ])
        #expect(status == 200 && answer["status"] == "succeeded", "\(answer)")
        #expect(try await remoteWorker(server, named: "cpu-box")?["tasksServed"] == 1, "the remote sdcpp worker ran it")
    }
}

extension Sequence {
    /// The elements transformed one after another by an async function.
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}

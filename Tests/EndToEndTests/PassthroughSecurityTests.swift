import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDBoxCore
import Testing

/// A stand-in for an AUTOMATIC1111 worker (`Tests/fixtures/a1111_stand_in.py`): a real FastAPI app under
/// uvicorn, which percent-decodes paths before routing and answers a trailing slash with a `307`, as A1111
/// does, and keeps A1111's global state (options, loaded checkpoint, last prompt). It records every call it
/// gets at `/internal/calls`. FastAPI and uvicorn come from PyPI, in the virtual environment
/// `scripts/install-test-deps.sh` makes under `~/.cache/sdbox` (`$XDG_CACHE_HOME/sdbox`).
enum A1111StandIn {
    static var python: String { testTool("a1111-stand-in-venv", "python") }

    static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: python) }

    /// The worker script, in this package's `Tests/fixtures`.
    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("fixtures/a1111_stand_in.py").path
    }

    /// Server settings whose pools run the stand-in: keys required, one worker, 20 ms per sampling step.
    /// `worker` in its command line is ignored by it and lets ``ServerProcess/destroy()`` find it; it also
    /// exits by itself once sdbox is gone (`--parent-pid`, and its parent process changing).
    static var config: String {
        let command = [
            python, script, "worker", "--api", "--nowebui", "--port", "{port}", "--ckpt", "{checkpoint}",
            "--parent-pid", "{sdbox_pid}", "--step-ms", "20",
        ]
        let quoted = command.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        return """
            auth: {required: true}
            scheduler: {maxInstances: 1}
            workers:
              launch:
                command: [\(quoted.joined(separator: ", "))]
                startupTimeoutSeconds: 60
            """
    }
}

/// Paths that reach a shared A1111 worker's controls once decoded or normalised (`%6Fptions`, `//...//`,
/// `/./`, `/x/../`, a trailing slash FastAPI redirects) never do through sdbox: the worker is not killed,
/// unloaded or reconfigured for everyone, and one user never sees another's prompt in its progress.
/// Judged on the worker's side: its process, its own options and the calls it recorded.
@Suite(
    .serialized, .timeLimit(.minutes(2)),
    .enabled(if: A1111StandIn.isAvailable, "FastAPI is not installed: run scripts/install-test-deps.sh (scripts/test does) to run the A1111 stand-in worker")
)
struct PassthroughSecurityTests {
    /// Sends `target` exactly as written (no normalising, no redirect followed) with `key`.
    func send(_ server: ServerProcess, _ method: HTTPMethod, _ target: String, _ body: JSONValue? = nil, key: String) async throws -> HTTPAnswer {
        var headers = bearer(key)
        if body != nil { headers.append(("Content-Type", "application/json")) }
        return try await server.response(method, target, body: try body?.encoded(), headers: headers)
    }

    /// For calls straight to the worker: uvicorn closes a connection idle for 5 s, and on a loaded machine
    /// the tests' pooled client could reuse one just as it closes (`remoteConnectionClosed` in a CI run).
    static let unpooled = [("Connection", "close")]

    /// The one worker, as `/workers` reports it to an admin.
    func onlyWorker(_ server: ServerProcess, admin: String) async throws -> JSONValue {
        let (status, answer) = try await server.json(.GET, "/workers", headers: bearer(admin))
        #expect(status == 200, "\(answer)")
        let workers = answer["workers"]?.arrayValue ?? []
        try #require(workers.count == 1, "\(answer)")
        return workers[0]
    }

    @Test func encodedAndNormalisedPathsNeverReachTheWorkersControls() async throws {
        let server = try await ServerProcess(config: A1111StandIn.config, models: ["stand-in.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let admin = try await server.addKey(user: "ops", role: "admin")
        let alice = try await server.addKey(user: "alice", role: "user")
        let bob = try await server.addKey(user: "bob", role: "user")

        // A worker of the model, started by an admin; its own view of its state before anything is tried.
        let (reloaded, reloadAnswer) = try await server.json(.POST, "/sdapi/v1/reload-checkpoint", headers: bearer(admin))
        #expect(reloaded == 200, "\(reloadAnswer) \(server.log)")
        let before = try await onlyWorker(server, admin: admin)
        let pid = try #require(before["pid"]?.integerValue, "\(before)")
        let port = try #require(before["port"]?.integerValue, "\(before)")
        let worker = "http://127.0.0.1:\(port)"
        #expect(before["state"] == "ready", "\(before)")
        let (_, originalOptions) = try await server.json(.GET, worker + "/sdapi/v1/options", headers: Self.unpooled)
        #expect(originalOptions["CLIP_stop_at_last_layers"] == 1, "\(originalOptions)")
        let checkpoint = try #require(originalOptions["sd_model_checkpoint"]?.stringValue)
        #expect(checkpoint == "stand-in.safetensors")

        // Endpoints on the allow-list are forwarded to the worker for a user key.
        let flags = try await send(server, .GET, "/sdapi/v1/cmd-flags", key: bob)
        #expect(flags.status == 200, "\(String(decoding: flags.body, as: UTF8.self))")
        let flagsJSON = try JSONValue(parsing: flags.body)
        #expect(flagsJSON["api"] == true)
        #expect(flagsJSON["stand_in"] == true, "answered by the worker, not by sdbox: \(flagsJSON)")
        let caption = try await send(server, .POST, "/sdapi/v1/interrogate", ["image": .string(try swatch((10, 20, 30))), "model": "clip"], key: bob)
        #expect(caption.status == 200, "\(String(decoding: caption.body, as: UTF8.self))")
        #expect(try JSONValue(parsing: caption.body)["caption"] == "a stand-in caption")

        // Alice generates with a prompt of her own; Bob asks for progress, in both spellings, while it runs
        // and after. The worker shows its last prompt to anyone (A1111's global state); sdbox does not.
        let secret = "alice-secret-prompt-7f3a9"
        let (accepted, submitted) = try await server.json(
            .POST, "/txt2img", ["prompt": .string(secret), "steps": 100, "width": 64, "height": 64],
            headers: bearer(alice) + [("Request-Type", "async")]
        )
        #expect(accepted == 200, "\(submitted)")
        let id = try #require(submitted["taskId"]?.stringValue)
        let progressSpellings = ["/sdapi/v1/%70rogress", "/sdapi/v1/progress"]
        var checksWhileRunning = 0
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let state = try await server.json(.GET, "/tasks/\(id)", headers: bearer(alice)).1["status"]?.stringValue
            if state == "running" {
                for spelling in progressSpellings {
                    let progress = try await send(server, .GET, spelling, key: bob)
                    let text = String(decoding: progress.body, as: UTF8.self)
                    #expect(!text.contains(secret), "GET \(spelling) by another user while Alice's task runs: \(progress.status) \(text)")
                }
                checksWhileRunning += 1
            } else if state != "waiting" {
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(checksWhileRunning > 0, "Alice's task was never seen running")
        let (_, result) = try await server.json(.GET, "/tasks/\(id)/result", headers: bearer(alice))
        #expect(result["status"] == "succeeded", "\(result)")
        #expect(result["images"]?.arrayValue?.count == 1, "\(result)")
        let (_, workerProgress) = try await server.request(.GET, worker + "/sdapi/v1/progress", headers: Self.unpooled)
        #expect(String(decoding: workerProgress, as: UTF8.self).contains(secret), "the worker itself shows the last prompt: what a forwarded progress call would leak")

        // Every hostile spelling, with Bob's user key.
        let takeover: JSONValue = ["sd_model_checkpoint": "other", "CLIP_stop_at_last_layers": 7]
        let controls = [
            "/sdapi/v1/server-kill", "/sdapi/v1/server%2Dkill", "/sdapi/v1/server-kill/", "/sdapi/v1/server%2dkill/",
            "/sdapi/v1/server-restart", "/sdapi/v1/server-stop", "/controlnet/..%2F..%2Fsdapi%2Fv1%2Fserver-kill",
        ]
        let optionSpellings = ["/sdapi/v1/%6Fptions", "/sdapi/v1/%6fptions", "//sdapi/v1/options/", "/sdapi/v1/./options", "/sdapi/v1/x/../options"]
        let unloadSpellings = ["/sdapi/v1/%75nload-checkpoint", "/sdapi/v1/unload-checkpoint/"]
        var answers: [(method: HTTPMethod, target: String, answer: HTTPAnswer)] = []
        for target in optionSpellings { answers.append((.POST, target, try await send(server, .POST, target, takeover, key: bob))) }
        for target in unloadSpellings { answers.append((.POST, target, try await send(server, .POST, target, key: bob))) }
        for target in controls { answers.append((.POST, target, try await send(server, .POST, target, key: bob))) }
        for target in progressSpellings { answers.append((.GET, target, try await send(server, .GET, target, key: bob))) }
        for (method, target, answer) in answers {
            let text = String(decoding: answer.body, as: UTF8.self)
            // A worker's redirect is never followed, and none is passed back: the path was judged as the worker reads it.
            #expect(!(300..<400).contains(answer.status), "\(method) \(target): \(answer.status) \(answer.headers) \(text)")
            #expect(answer.status < 500, "\(method) \(target): \(answer.status) \(text)")
            if controls.contains(target) {
                #expect(answer.status == 403, "\(method) \(target): \(answer.status) \(text)")
            }
            if unloadSpellings.contains(target) {
                // sdbox's own unload-checkpoint is for admins; a spelling of it is not forwarded either.
                #expect(!(200..<300).contains(answer.status), "\(method) \(target): \(answer.status) \(text)")
            }
            if progressSpellings.contains(target) {
                #expect(!text.contains(secret), "\(method) \(target): \(answer.status) \(text)")
            }
        }

        // (a) The same worker process, alive and not being stopped.
        let after = try await onlyWorker(server, admin: admin)
        #expect(after["id"] == before["id"] && after["pid"] == before["pid"] && after["port"] == before["port"], "before: \(before), after: \(after)")
        #expect(after["state"] == "ready" || after["state"] == "busy", "\(after)")
        #expect(kill(pid_t(pid), 0) == 0, "worker process \(pid) is gone")
        #expect(try await server.json(.GET, worker + "/internal/ping", headers: Self.unpooled).1["status"] == "ok")
        // (b) The worker never got a call to its options, model loading or server controls, nor a path it
        // would read differently from sdbox, nor answered a redirect.
        let (_, recorded) = try await server.json(.GET, worker + "/internal/calls", headers: Self.unpooled)
        let calls = try #require(recorded.arrayValue, "\(recorded)")
        for call in calls {
            let method = call["method"]?.stringValue ?? ""
            let path = call["path"]?.stringValue ?? ""
            let raw = call["raw_path"]?.stringValue ?? ""
            #expect(!(method == "POST" && path.contains("options")), "the worker's options were written: \(call)")
            #expect(!path.contains("unload-checkpoint") && !path.contains("reload-checkpoint"), "\(call)")
            #expect(!path.contains("server-"), "\(call)")
            #expect(call["status"] != 307, "\(call)")
            #expect(!raw.contains("%") && !raw.contains("//") && !raw.contains("/./") && !raw.contains("/../"), "\(call)")
        }
        #expect(calls.contains { $0["method"] == "GET" && $0["path"] == "/sdapi/v1/cmd-flags" }, "the recorder saw the forwarded calls: \(calls)")
        #expect(calls.contains { $0["method"] == "POST" && $0["path"] == "/sdapi/v1/interrogate" }, "\(calls)")
        #expect(calls.contains { $0["method"] == "POST" && $0["path"] == "/sdapi/v1/txt2img" }, "\(calls)")
        // (c) Its options and its checkpoint are as they were.
        let (_, options) = try await server.json(.GET, worker + "/sdapi/v1/options", headers: Self.unpooled)
        #expect(options["CLIP_stop_at_last_layers"] == 1, "\(options)")
        #expect(options["sd_model_checkpoint"] == .string(checkpoint), "\(options)")
        #expect(try await server.json(.GET, worker + "/sdapi/v1/memory", headers: Self.unpooled).1["loaded"] == true, "the checkpoint was unloaded")

        // The worker still generates for everyone, with its settings unchanged.
        let generated = try await send(server, .POST, "/sdapi/v1/txt2img", ["prompt": "a plain fox", "steps": 2, "width": 64, "height": 64], key: bob)
        #expect(generated.status == 200, "\(String(decoding: generated.body.prefix(500), as: UTF8.self))")
        let answer = try JSONValue(parsing: generated.body)
        #expect(answer["images"]?.arrayValue?.count == 1)
        let info = try JSONValue(parsing: Data(try #require(answer["info"]?.stringValue, "\(answer)").utf8))
        #expect(info["options"]?["CLIP_stop_at_last_layers"] == 1, "\(info)")
        #expect(info["options"]?["sd_model_checkpoint"] == .string(checkpoint), "\(info)")
        #expect(try await onlyWorker(server, admin: admin)["pid"] == before["pid"])
    }
}

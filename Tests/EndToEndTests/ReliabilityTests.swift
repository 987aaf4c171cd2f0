import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// Nothing lost and nothing broken: sdbox killed again and again under load, and workers that answer garbage.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ReliabilityTests {
    /// Tasks per round: 40 in the suite; `SDBOX_CRASH_TASKS=1000 swift test --filter everyAcceptedTask` runs the long version.
    static let tasksPerRound = max(1, (Int(ProcessInfo.processInfo.environment["SDBOX_CRASH_TASKS"] ?? "") ?? 120) / 3)

    @Test func everyAcceptedTaskEndsOnceThroughRepeatedKills() async throws {
        let server = try await ServerProcess(config: """
            scheduler: {maxInstances: 2, maxAttempts: 10}
            workers:
              reference: {stepMilliseconds: 4, minimumStepMilliseconds: 1}
            """)
        defer { server.destroy() }
        var generator = SystemRandomNumberGenerator()
        var accepted: [String] = []
        for round in 0..<3 {
            for index in 0..<Self.tasksPerRound {
                let (status, answer) = try await server.json(
                    .POST, "/txt2img", ["prompt": .string("round \(round) task \(index)"), "steps": 3, "width": 64, "height": 64],
                    headers: [("Request-Type", "async")]
                )
                #expect(status == 200)
                if let id = answer["taskId"]?.stringValue { accepted.append(id) }
            }
            // Let some run, then kill sdbox without warning at a random moment, and start it again.
            try await Task.sleep(for: .milliseconds(Int64.random(in: 50...400, using: &generator)))
            await server.stop(signal: SIGKILL)
            try await server.start()
        }
        #expect(accepted.count == Self.tasksPerRound * 3)
        var final: [String: String] = [:]
        for id in accepted {
            final[id] = try await server.waitForTask(id, timeout: .seconds(120))["status"]?.stringValue
        }
        #expect(final.values.allSatisfy { $0 == "succeeded" }, "\(final.values.filter { $0 != "succeeded" })")
        // The store holds each task once, with its images.
        var listed: [String] = []
        var next: String? = ""
        while let cursor = next {
            let (_, page) = try await server.json(.GET, "/tasks?limit=500" + (cursor.isEmpty ? "" : "&before=\(cursor)"))
            listed += (page["tasks"]?.arrayValue ?? []).compactMap { $0["taskId"]?.stringValue }
            next = page["next"]?.stringValue
        }
        #expect(listed.count == accepted.count && Set(listed) == Set(accepted))
        for id in accepted.prefix(10) {
            let result = try await server.json(.GET, "/tasks/\(id)/result").1
            #expect(result["images"]?.arrayValue?.count == 1)
        }
    }

    @Test func aWorkerAnsweringGarbageFailsTheTaskAndNothingElse() async throws {
        // A "worker" that is ready at once and answers every generation with bytes that are not JSON.
        let script = """
            import http.server, sys
            class H(http.server.BaseHTTPRequestHandler):
                def reply(self, body):
                    self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
                def do_GET(self): self.reply(b'{}')
                def do_POST(self):
                    self.rfile.read(int(self.headers.get('Content-Length', 0))); self.reply(b'\\x00garbage{{{')
                def log_message(self, *args): pass
            http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
            """
        let server = try await ServerProcess(config: """
            workers:
              launch:
                command: [python3, -c, \(try String(decoding: JSONValue.string(script).encoded(), as: UTF8.self)), "{port}"]
                startupTimeoutSeconds: 30
            """, models: ["demo.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let (status, answer) = try await server.json(.POST, "/txt2img", ["steps": 1, "width": 64, "height": 64])
        #expect(status == 500)
        #expect(answer["error"] == "task failed")
        #expect(answer["detail"]?.stringValue?.contains("could not store the result") == true, "\(answer)")
        #expect(try await server.json(.GET, "/healthz").0 == 200)
        let (_, list) = try await server.json(.GET, "/tasks")
        #expect(list["tasks"]?.arrayValue?.first?["status"] == "failed")
        // The test leaves no process behind, this worker that is not sdbox's own included.
        let workerPID = try #require(try await server.json(.GET, "/workers").1["workers"]?.arrayValue?.first?["pid"]?.integerValue)
        server.destroy()
        #expect(try await processEnds(pid_t(workerPID)), "the garbage worker \(workerPID) outlived its test")
    }
}

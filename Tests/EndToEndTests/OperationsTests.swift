import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// Operating sdbox: `/metrics`, `/readyz`, `sdbox doctor`, and `SDBOX_*` environment variables.
@Suite(.serialized, .timeLimit(.minutes(2))) struct OperationsTests {
    /// The samples of a Prometheus text exposition: series (name and labels) to value.
    static func samples(_ text: String) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    /// The sum of every sample of `name` whose labels include all of `labels`.
    static func total(_ samples: [String: Double], _ name: String, _ labels: [String] = []) -> Double {
        samples.filter { key, _ in
            (key == name || key.hasPrefix(name + "{")) && labels.allSatisfy { key.contains($0) }
        }.values.reduce(0, +)
    }

    /// Hundreds of clients polling one running task cost its worker a few progress calls a second.
    @Test func pollsOfARunningTaskShareTheWorkersAnswer() async throws {
        let server = try await ServerProcess(config: pacedWorkers)
        defer { server.destroy() }
        // 80 ms a step at this size: the task runs some 8 s, longer than the polls take on a loaded machine.
        let (_, submitted) = try await server.json(.POST, "/txt2img", ["prompt": "poll", "steps": 100, "width": 1024, "height": 1024], headers: [("Request-Type", "async")])
        let id = try #require(submitted["taskId"]?.stringValue)
        let start = ContinuousClock.now
        var states: [String] = []
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<400 {
                group.addTask { try await server.json(.GET, "/tasks/\(id)/progress").1["status"]?.stringValue ?? "none" }
            }
            for try await state in group { states.append(state) }
        }
        let elapsed = start.duration(to: .now)
        #expect(states.count == 400 && states.allSatisfy { ["waiting", "running"].contains($0) }, "\(Set(states))")
        let samples = Self.samples(String(decoding: try await server.request(.GET, "/metrics").1, as: UTF8.self))
        let calls = Self.total(samples, "sdbox_worker_progress_calls_total")
        // One call per 0.1 s at most, however many polls came in that time.
        #expect(calls >= 1 && calls <= (elapsed / .milliseconds(100)).rounded(.up) + 1, "\(calls) calls in \(elapsed) for \(states.filter { $0 == "running" }.count) polls of a running task")
        // The live preview comes with a running task's progress unless skip_current_image is set, as in A1111.
        let deadline = ContinuousClock.now + .seconds(20)
        var preview: JSONValue?
        while preview?.stringValue?.isEmpty != false, ContinuousClock.now < deadline {
            preview = try await server.json(.GET, "/tasks/\(id)/progress").1["currentImage"]
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(preview?.stringValue?.isEmpty == false)
        #expect(try await server.json(.GET, "/tasks/\(id)/progress?skip_current_image=true").1["currentImage"] == "")
        #expect(try await server.json(.GET, "/sdapi/v1/progress?skip_current_image=true").1["current_image"]?.isNull == true)
        #expect(try await server.json(.GET, "/sdapi/v1/progress").1["current_image"]?.stringValue?.isEmpty == false)
        _ = try await server.json(.POST, "/tasks/\(id)/cancellation")
    }

    @Test func metricsAndReadiness() async throws {
        let server = try await ServerProcess(config: """
            scheduler:
              maxInstances: 1
              gpus: [{index: 0, memoryMiB: 16000}]
              hostMemoryMiB: 8000
              pool: {gpuMemoryMiB: 6000}
            workers:
              reference: {stepMilliseconds: 2, minimumStepMilliseconds: 1}
            """, models: ["alpha.safetensors": DemoCheckpoint.contents(), "beta.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let (ready, readiness) = try await server.json(.GET, "/readyz")
        #expect(ready == 200)
        #expect(readiness["status"] == "ready")
        // Alternating models under a cap of one: every switch parks the other model's worker in RAM, and
        // the third task brings alpha's back instead of starting a process.
        for model in ["alpha", "beta", "alpha"] {
            let (status, _) = try await server.json(.POST, "/txt2img", ["stable_diffusion_model": .string(model), "steps": 2, "width": 64, "height": 64])
            #expect(status == 200)
        }
        _ = try await server.json(.GET, "/tasks/nonexistent0/result")
        let (status, body) = try await server.request(.GET, "/metrics")
        #expect(status == 200)
        let samples = Self.samples(String(decoding: body, as: UTF8.self))
        #expect(Self.total(samples, "sdbox_http_requests_total", [#"route="/txt2img""#, #"status="200""#]) == 3)
        #expect(Self.total(samples, "sdbox_http_requests_total", [#"route="/tasks/{id}/result""#, #"status="404""#]) == 1)
        #expect(Self.total(samples, "sdbox_tasks_total", [#"state="succeeded""#]) == 3)
        #expect(Self.total(samples, "sdbox_task_latency_seconds_count", [#"model="alpha.safetensors""#]) == 2)
        #expect(Self.total(samples, "sdbox_task_run_seconds_bucket", [#"model="beta.safetensors""#, #"le="+Inf""#]) == 1)
        #expect(Self.total(samples, "sdbox_worker_cold_starts_total") == 2)
        #expect(Self.total(samples, "sdbox_worker_parks_total") == 2)
        #expect(Self.total(samples, "sdbox_worker_reloads_total", [#"model="alpha.safetensors""#]) == 1)
        #expect(Self.total(samples, "sdbox_worker_evictions_total") == 0, "no process stopped")
        #expect(samples[#"sdbox_workers_by_tier{tier="gpu"}"#] == 1 && samples[#"sdbox_workers_by_tier{tier="ram"}"#] == 1)
        #expect(samples[#"sdbox_host_memory_parked_mib"#] == 6000)
        #expect(samples.keys.contains { $0.hasPrefix("sdbox_queue_depth{") })
        #expect(samples.keys.contains { $0.hasPrefix("sdbox_workers{") })
        #expect(samples[#"sdbox_gpu_memory_total_mib{gpu="0"}"#] == 16000)
        #expect(samples[#"sdbox_gpu_memory_planned_mib{gpu="0"}"#] == 6000)
    }

    @Test func doctorGivesAVerdictPerCheck() async throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-doctor-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        guard let port = FreePort.allocate() else { throw TestFailure("no free port") }
        let (status, output) = try await runSDBox(["doctor", "--data-dir", data, "--port", "\(port)"])
        #expect(status == 0, "\(output)")
        #expect(output.contains("[WARN] GPUs: no GPU: CPU-only mode"))
        #expect(output.contains("[OK]   data folder:"))
        #expect(output.contains("[OK]   database:"))
        #expect(output.contains("[OK]   port: 127.0.0.1:\(port) is free"))
        #expect(output.contains("[WARN] worker backend: the built-in reference worker"))
        #expect(output.contains("[OK]   worker start: loaded demo.safetensors"))
        #expect(output.contains("sdbox doctor: ready"))

        // A backend that is not installed, and a configuration with a typo, are failures.
        let config = data + "/broken.yaml"
        try "workers:\n  launch:\n    command: [/opt/no-such-webui/launch.py, --port, \"{port}\"]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let (missing, missingOutput) = try await runSDBox(["doctor", "--data-dir", data, "--config", config])
        #expect(missing == 1)
        #expect(missingOutput.contains("[FAIL] worker backend: profile 'default': program '/opt/no-such-webui/launch.py' not found"))
        try "scheduler:\n  maxInstanse: 2\n".write(toFile: config, atomically: true, encoding: .utf8)
        let (invalid, invalidOutput) = try await runSDBox(["doctor", "--data-dir", data, "--config", config])
        #expect(invalid == 1)
        #expect(invalidOutput.contains("[FAIL] config:") && invalidOutput.contains("scheduler.maxInstanse"))
    }

    @Test func environmentVariablesOverrideTheFile() async throws {
        let (status, output) = try await runSDBox(["serve", "--data-dir", "/tmp/unused"], environment: ["SDBOX_MAX_INSTANCES": "many"])
        #expect(status != 0)
        #expect(output.contains("SDBOX_MAX_INSTANCES"), "\(output)")
        let server = try await ServerProcess(config: fastWorkers, environment: ["SDBOX_MAX_INSTANCES": "3", "SDBOX_PUBLIC_URL": "https://sd.example.com"])
        defer { server.destroy() }
        let (_, workers) = try await server.json(.GET, "/workers")
        #expect(workers["maxInstances"] == 3)
        let (_, generated) = try await server.json(.POST, "/txt2img", ["steps": 1, "width": 64, "height": 64])
        #expect(generated["ossUrl"]?.arrayValue?.first?.stringValue?.hasPrefix("https://sd.example.com/objects/") == true)
    }
}

import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// Holding the queue before maintenance: a paused queue (the box's, or one pool's) accepts and keeps tasks
/// and starts none, across a restart, until it is resumed; a queued task can be moved to the front.
@Suite(.serialized, .timeLimit(.minutes(2))) struct QueuePauseTests {
    static let models = ["alpha.safetensors": DemoCheckpoint.contents(), "beta.safetensors": DemoCheckpoint.contents()]
    static let config = """
        scheduler:
          maxInstances: 1
        workers:
          reference: {stepMilliseconds: 5, minimumStepMilliseconds: 5}
        """

    func submit(_ server: ServerProcess, model: String) async throws -> String {
        let (status, accepted) = try await server.json(
            .POST, "/txt2img", ["stable_diffusion_model": .string(model), "prompt": "p", "steps": 2, "width": 64, "height": 64],
            headers: [("Request-Type", "async")]
        )
        #expect(status == 200, "\(accepted)")
        return try #require(accepted["taskId"]?.stringValue)
    }

    func status(_ server: ServerProcess, _ id: String) async throws -> JSONValue? {
        try await server.json(.GET, "/tasks/\(id)/result").1["status"]
    }

    @Test func aPausedBoxKeepsItsTasksAcrossARestartAndRunsThemWhenResumed() async throws {
        let server = try await ServerProcess(config: Self.config, models: Self.models)
        defer { server.destroy() }
        let (paused, state) = try await server.json(.POST, "/admin/queue/pause")
        #expect(paused == 200 && state["paused"] == true)
        let id = try await submit(server, model: "alpha")
        try await Task.sleep(for: .seconds(1))
        #expect(try await status(server, id) == "waiting", "accepted and kept, not started")
        let (_, workers) = try await server.json(.GET, "/workers")
        #expect(workers["workers"]?.arrayValue?.isEmpty == true && workers["paused"]?["all"] == true)
        let metrics = String(decoding: try await server.request(.GET, "/metrics").1, as: UTF8.self)
        #expect(metrics.contains(#"sdbox_queue_paused{model="*"} 1"#), "\(metrics)")
        // The pause outlives a restart, and so does the task.
        await server.stop()
        try await server.start()
        #expect(try await server.json(.GET, "/admin/queue").1["paused"] == true)
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await status(server, id) == "waiting")
        let (resumed, after) = try await server.json(.POST, "/admin/queue/resume")
        #expect(resumed == 200 && after["paused"] == false)
        #expect(try await server.waitForTask(id)["status"] == "succeeded")
    }

    @Test func onePausedPoolWaitsWhileOthersRunAndAQueuedTaskMovesToTheFront() async throws {
        let server = try await ServerProcess(config: Self.config, models: Self.models)
        defer { server.destroy() }
        let (paused, state) = try await server.json(.POST, "/admin/queue/pause", ["model": "alpha"])
        #expect(paused == 200 && state["pausedModels"] == ["alpha.safetensors"] && state["paused"] == false)
        let alphas = [try await submit(server, model: "alpha"), try await submit(server, model: "alpha"), try await submit(server, model: "alpha")]
        let beta = try await submit(server, model: "beta")
        #expect(try await server.waitForTask(beta)["status"] == "succeeded", "another pool runs")
        for id in alphas { #expect(try await status(server, id) == "waiting") }
        // The last alpha task goes first.
        let (moved, front) = try await server.json(.POST, "/admin/tasks/\(alphas[2])/front")
        #expect(moved == 200 && front["queuePosition"] == 1, "\(front)")
        #expect(try await server.json(.POST, "/admin/tasks/\(beta)/front").0 == 409, "a finished task is not queued")
        #expect(try await server.json(.POST, "/admin/tasks/tsk0000000000000000000000/front").0 == 404)
        #expect(try await server.json(.POST, "/admin/queue/pause", ["model": "nonexistent"]).0 == 404)
        #expect(try await server.json(.POST, "/admin/queue/resume", ["model": "alpha"]).1["pausedModels"] == [])
        for id in alphas { #expect(try await server.waitForTask(id)["status"] == "succeeded") }
        let (_, list) = try await server.json(.GET, "/tasks")
        let started = Dictionary(uniqueKeysWithValues: (list["tasks"]?.arrayValue ?? []).compactMap { task -> (String, Double)? in
            guard let id = task["taskId"]?.stringValue, let at = task["startedAt"]?.doubleValue else { return nil }
            return (id, at)
        })
        let first = alphas.min { (started[$0] ?? .infinity) < (started[$1] ?? .infinity) }
        #expect(first == alphas[2], "the task moved to the front ran first: \(started)")
    }
}

import Foundation
import NIOHTTP1
import PostgresTestSupport
import SDBoxCore
import Testing

/// `sdbox serve` with `database.url`: its tasks, keys and models live in PostgreSQL (a real server, made
/// by the tests) and are there again after a restart; the data folder holds no LMDB database.
@Suite(.serialized, .timeLimit(.minutes(3))) struct PostgresStoreTests {
    @Test func tasksKeysAndModelsLiveInPostgreSQLAcrossARestart() async throws {
        let postgres = try await PostgresServer.shared()
        let url = try await postgres.makeDatabase()
        let server = try await ServerProcess(config: """
            database:
              url: "\(url)"
            workers:
              reference: {stepMilliseconds: 20, minimumStepMilliseconds: 20}
            """, models: ["alpha.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        #expect(server.log.contains("database: PostgreSQL postgres://sdbox@127.0.0.1"), "\(server.log)")
        let body: JSONValue = ["stable_diffusion_model": "alpha", "prompt": "fox", "steps": 2, "width": 64, "height": 64]
        var ids: [String] = []
        for _ in 0..<2 {
            let (status, answer) = try await server.json(.POST, "/txt2img", body)
            #expect(status == 200 && answer["status"] == "succeeded", "\(answer)")
            ids.append(try #require(answer["taskId"]?.stringValue))
        }
        for _ in 0..<3 {
            let (status, accepted) = try await server.json(.POST, "/txt2img", body, headers: [("Request-Type", "async")])
            #expect(status == 200 || status == 202, "\(accepted)")
            ids.append(try #require(accepted["taskId"]?.stringValue))
        }
        for id in ids { #expect(try await server.waitForTask(id)["status"] == "succeeded") }
        let (created, made) = try await server.json(.POST, "/admin/keys", ["user": "carol", "role": "user"])
        #expect(created == 201, "\(made)")
        let key = try #require(made["key"]?.stringValue)

        // In PostgreSQL, and not in an LMDB database of the data folder.
        #expect(try await postgres.psql(url, "SELECT count(*) FROM sdbox_tasks WHERE state = 'succeeded'") == "\(ids.count)")
        #expect(try await postgres.psql(url, "SELECT record->>'user' FROM sdbox_api_keys") == "carol")
        #expect(try await postgres.psql(url, "SELECT name FROM sdbox_models WHERE type = 'stableDiffusion'") == "alpha.safetensors")
        #expect(try await postgres.psql(url, "SELECT max(version) FROM sdbox_schema_migrations") == "5")
        #expect(!FileManager.default.fileExists(atPath: server.dataDirectory + "/db/data.mdb"))

        await server.stop()
        try await server.start()
        for id in ids {
            let result = try await server.json(.GET, "/tasks/\(id)/result").1
            #expect(result["status"] == "succeeded" && result["images"]?.arrayValue?.count == 1, "\(result)")
        }
        let (status, listed) = try await server.json(.GET, "/tasks?limit=10")
        #expect(status == 200 && Set(listed["tasks"]?.arrayValue?.compactMap { $0["taskId"]?.stringValue } ?? []) == Set(ids))
        #expect(try await server.json(.GET, "/tasks", headers: bearer(key)).0 == 200, "the key made before the restart")
        // `sdbox keys` works on the configuration's database, with the server running.
        let made2 = try await runSDBox(["keys", "add", "--config", server.configPath, "--user", "dave", "--role", "admin"])
        let daveKey = try #require(made2.output.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }, "\(made2.output)")
        let daveCan = try await server.json(.GET, "/admin/keys", headers: bearer(daveKey)).0
        let bogus = try await server.json(.GET, "/admin/keys", headers: bearer("sdbox_bogus")).0
        #expect(made2.status == 0 && daveCan == 200 && bogus == 401, "\(made2.output) \(bogus)")
        let listedKeys = try await runSDBox(["keys", "list", "--config", server.configPath])
        #expect(listedKeys.output.contains("dave") && listedKeys.output.contains("carol"), "\(listedKeys.output)")
        let models = try await server.json(.GET, "/models").1
        #expect(String(decoding: try models.encoded(), as: UTF8.self).contains("alpha.safetensors"))
        // A NUL character, which PostgreSQL cannot store, is the request's fault: 400, and nothing stored.
        let before = try await postgres.psql(url, "SELECT count(*) FROM sdbox_tasks")
        let (nul, refusal) = try await server.json(.POST, "/txt2img", ["stable_diffusion_model": "alpha", "prompt": "a\u{0}b", "steps": 1, "width": 64, "height": 64])
        #expect(nul == 400 && refusal["detail"]?.stringValue?.contains("NUL character") == true, "\(refusal)")
        #expect(try await postgres.psql(url, "SELECT count(*) FROM sdbox_tasks") == before)
        // A task after the restart, and still no LMDB database.
        #expect(try await server.json(.POST, "/txt2img", body).1["status"] == "succeeded")
        #expect(try await postgres.psql(url, "SELECT count(*) FROM sdbox_tasks") == "\(ids.count + 1)")
        #expect(!FileManager.default.fileExists(atPath: server.dataDirectory + "/db/data.mdb"))
    }

    /// Claims carry a box's name, so two live boxes never share one: a second box under a live box's name
    /// is refused with the reason; a box killed and restarting under its name waits for its old row to go
    /// stale and starts; a graceful stop removes the row.
    @Test func aBoxUnderALiveBoxsNameIsRefused() async throws {
        let postgres = try await PostgresServer.shared()
        let url = try await postgres.makeDatabase()
        let config = """
            database:
              url: "\(url)"
            node: {name: box-a}
            fleet: {claimSeconds: 3}
            """
        let first = try await ServerProcess(config: config, models: ["alpha.safetensors": DemoCheckpoint.contents()])
        defer { first.destroy() }
        #expect(try await postgres.psql(url, "SELECT name FROM sdbox_nodes") == "box-a")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-e2e-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try config.write(toFile: folder + "/sdbox.yaml", atomically: true, encoding: .utf8)
        let port = try #require(FreePort.allocate())
        let refused = try await runSDBox(["serve", "--config", folder + "/sdbox.yaml", "--port", "\(port)", "--data-dir", folder])
        #expect(refused.status != 0 && refused.output.contains("another box named 'box-a' is using the database"), "\(refused.output)")
        // A crash leaves the row: the same box, restarting, waits for it to go stale and takes it over.
        await first.stop(signal: SIGKILL)
        try await first.start()
        // A graceful stop removes it.
        await first.stop()
        #expect(try await postgres.psql(url, "SELECT count(*) FROM sdbox_nodes") == "0")
    }

    /// PostgreSQL stopped while tasks run: requests that need it answer 503 with the reason, tasks that end
    /// meanwhile keep their outcome until the database is back, and the box goes on by itself.
    @Test func anOutageOfPostgreSQLAnswers503AndLosesNothing() async throws {
        let postgres = try await PostgresServer.dedicated()
        let url = try await postgres.makeDatabase()
        let server = try await ServerProcess(config: """
            database:
              url: "\(url)"
              timeoutSeconds: 2
            workers:
              reference: {stepMilliseconds: 100, minimumStepMilliseconds: 100}
            """, models: ["alpha.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let body: JSONValue = ["stable_diffusion_model": "alpha", "prompt": "fox", "steps": 20, "width": 64, "height": 64]
        // A task accepted before the outage that runs through it (20 steps of 100 ms).
        let (status, accepted) = try await server.json(.POST, "/txt2img", body, headers: [("Request-Type", "async")])
        #expect(status == 200, "\(accepted)")
        let id = try #require(accepted["taskId"]?.stringValue)
        let deadline = ContinuousClock.now + .seconds(30)
        while try await server.json(.GET, "/tasks/\(id)/result").1["status"] != "running", ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        try await postgres.stop()
        let refused = try await server.response(.POST, "/txt2img", body: try body.encoded(), headers: [("Request-Type", "async")])
        let answer = try JSONValue(parsing: refused.body)
        #expect(refused.status == 503 && answer["error"] == "database unavailable", "\(answer)")
        #expect(answer["message"]?.stringValue?.contains("nothing was changed, try again") == true && refused.headers["Retry-After"].first == "5", "\(answer)")
        #expect(try await server.json(.GET, "/tasks/\(id)/result").0 == 503)
        try await Task.sleep(for: .seconds(2))
        try await postgres.start()
        // Back by itself: the task accepted before is there and succeeded, and new work is taken.
        let final = try await server.waitForTask(id)
        #expect(final["status"] == "succeeded", "\(final)\n\(server.log.suffix(4000))")
        #expect(try await server.json(.POST, "/txt2img", ["stable_diffusion_model": "alpha", "prompt": "p", "steps": 1, "width": 64, "height": 64]).1["status"] == "succeeded")
    }

    @Test func aDatabaseThatCannotBeReachedStopsTheStartWithAClearMessage() async throws {
        let port = try #require(FreePort.allocate())
        let url = "postgres://sdbox:hunter2@127.0.0.1:\(port)/sdbox?sslmode=disable"
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-e2e-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (status, output) = try await runSDBox(["serve", "--port", "\(try #require(FreePort.allocate()))", "--data-dir", folder], environment: ["SDBOX_DATABASE_URL": url])
        #expect(status != 0)
        #expect(output.contains("postgres://sdbox:***@127.0.0.1:\(port)/sdbox") && output.contains("cannot be reached") && !output.contains("hunter2"), "\(output)")
        let doctor = try await runSDBox(["doctor", "--data-dir", folder], environment: ["SDBOX_DATABASE_URL": url])
        #expect(doctor.output.contains("[FAIL] database: database postgres://sdbox:***@"), "\(doctor.output)")
    }
}

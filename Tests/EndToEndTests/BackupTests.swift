import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// `sdbox backup` of a running box and `sdbox restore` into an empty folder: the restored box serves the
/// same tasks, images, keys and models.
@Suite(.serialized, .timeLimit(.minutes(3))) struct BackupTests {
    static let config = """
        workers:
          reference: {stepMilliseconds: 10, minimumStepMilliseconds: 10}
        """

    static func temporaryPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-\(name)-\(UUID().uuidString)").path
    }

    /// Every task `GET /tasks` lists (all pages), by id.
    static func tasks(of server: ServerProcess) async throws -> [String: JSONValue] {
        var tasks: [String: JSONValue] = [:]
        var path = "/tasks?limit=100"
        while true {
            let (status, page) = try await server.json(.GET, path)
            #expect(status == 200, "\(page)")
            for task in page["tasks"]?.arrayValue ?? [] {
                if let id = task["taskId"]?.stringValue { tasks[id] = task }
            }
            guard let next = page["next"]?.stringValue else { return tasks }
            path = "/tasks?limit=100&before=\(next)"
        }
    }

    /// The bytes of every image of a finished task, downloaded through its signed URLs.
    static func images(of id: String, on server: ServerProcess) async throws -> [Data] {
        let (_, result) = try await server.json(.GET, "/tasks/\(id)/result")
        var images: [Data] = []
        for url in result["ossUrl"]?.arrayValue?.compactMap(\.stringValue) ?? [] {
            let (status, bytes) = try await server.request(.GET, url)
            #expect(status == 200, "\(url)")
            images.append(bytes)
        }
        return images
    }

    /// The model list once every model is hashed, without what depends on the folder or the moment (paths,
    /// live status).
    static func models(of server: ServerProcess) async throws -> [JSONValue] {
        let deadline = ContinuousClock.now + .seconds(30)
        var list: JSONValue = []
        repeat {
            list = try await server.json(.GET, "/models").1
            if list.arrayValue?.allSatisfy({ $0["etag"] != "" }) == true { break }
            try await Task.sleep(for: .milliseconds(50))
        } while ContinuousClock.now < deadline
        return (list.arrayValue ?? []).map { model in
            .object([
                "type": model["type"] ?? .null, "name": model["name"] ?? .null, "etag": model["etag"] ?? .null, "size": model["size"] ?? .null,
                "registeredTime": model["registeredTime"] ?? .null, "lastModificationTime": model["lastModificationTime"] ?? .null,
            ])
        }
    }

    static let finalStates: Set<String> = ["succeeded", "failed", "cancelled"]

    @Test func aBackupTakenUnderLoadRestoresToABoxWhoseTaskListAndImagesMatch() async throws {
        let server = try await ServerProcess(config: Self.config, models: ["alpha.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let adminKey = try await server.addKey(user: "root", role: "admin")
        let userKey = try await server.addKey(user: "alice", role: "user")
        let body: JSONValue = ["stable_diffusion_model": "alpha", "prompt": "p", "steps": 4, "width": 64, "height": 64]
        for _ in 0..<3 {
            #expect(try await server.json(.POST, "/txt2img", body, headers: bearer(userKey)).1["status"] == "succeeded")
        }
        // Load: ten tasks held in a paused queue (so that some are surely unfinished in the backup), and more
        // submitted one after another, as alice, all through the backup.
        #expect(try await server.json(.POST, "/admin/queue/pause", nil, headers: bearer(adminKey)).0 == 200)
        var held: [String] = []
        for _ in 0..<10 {
            let (_, accepted) = try await server.json(.POST, "/txt2img", body, headers: bearer(userKey) + [("Request-Type", "async")])
            held.append(try #require(accepted["taskId"]?.stringValue))
        }
        let submitter = Task {
            var ids: [String] = []
            while !Task.isCancelled {
                if let (_, accepted) = try? await server.json(.POST, "/txt2img", body, headers: bearer(userKey) + [("Request-Type", "async")]),
                    let id = accepted["taskId"]?.stringValue
                {
                    ids.append(id)
                }
                try? await Task.sleep(for: .milliseconds(15))
            }
            return ids
        }
        try await Task.sleep(for: .milliseconds(200))
        let finalBefore = try await Self.tasks(of: server).filter { Self.finalStates.contains($0.value["status"]?.stringValue ?? "") }
        let archive = Self.temporaryPath("backup") + ".tar"
        defer { unlink(archive) }
        let backup = try await runSDBox(["backup", "--data-dir", server.dataDirectory, "--config", server.configPath, archive])
        let activeAfterBackup = try await Self.tasks(of: server).values.filter { !Self.finalStates.contains($0["status"]?.stringValue ?? "") }.count
        submitter.cancel()
        let submitted = await submitter.value
        #expect(try await server.json(.POST, "/admin/queue/resume", nil, headers: bearer(adminKey)).0 == 200)
        #expect(backup.status == 0, "\(backup.output)")
        #expect(backup.output.contains("models: not included"), "\(backup.output)")
        #expect(activeAfterBackup >= 10, "the backup ran under load: \(submitted.count) submitted meanwhile, \(activeAfterBackup) waiting or running")
        for id in held + submitted { _ = try await server.waitForTask(id) }
        let original = try await Self.tasks(of: server)
        let originalModels = try await Self.models(of: server)

        // Not into a folder that holds anything (the running box's own).
        let refused = try await runSDBox(["restore", "--data-dir", server.dataDirectory, archive])
        #expect(refused.status != 0 && refused.output.contains("not empty"), "\(refused.output)")

        let folder = Self.temporaryPath("restored")
        let restore = try await runSDBox(["restore", "--data-dir", folder, archive])
        #expect(restore.status == 0, "\(restore.output)")
        #expect(restore.output.contains("2 API keys"), "\(restore.output)")
        #expect(FileManager.default.contents(atPath: folder + "/sdbox.yaml") == FileManager.default.contents(atPath: server.configPath))
        // The models folder, copied beside the backup as the docs say (times kept, so nothing is hashed again).
        let copy = try await runProgram(["/bin/cp", "-a", server.dataDirectory + "/models", folder + "/models"])
        #expect(copy.status == 0, "\(copy.output)")
        let restored = try await ServerProcess(config: Self.config, dataDirectory: folder)
        defer { restored.destroy() }

        // Every task final in the backup is there as it was, with the same images; the tasks final before
        // the backup started are among them. A task that was waiting or running then starts again here.
        let tasks = try await Self.tasks(of: restored)
        #expect(Set(tasks.keys).isSubset(of: Set(original.keys)))
        #expect(Set(finalBefore.keys).isSubset(of: Set(tasks.keys)))
        var compared = 0
        for (id, task) in tasks where task["finishedAt"] != .null && task["finishedAt"] == original[id]?["finishedAt"] {
            #expect(task["status"] == original[id]?["status"] && task["createdAt"] == original[id]?["createdAt"], "\(id)")
            let images = try await Self.images(of: id, on: restored)
            let originalImages = try await Self.images(of: id, on: server)
            #expect(!images.isEmpty && images == originalImages, "\(id)")
            compared += 1
        }
        #expect(compared >= finalBefore.count && compared >= 3, "\(compared) tasks compared")
        // The queue was paused when the backup was taken: so it is on the restored box, until resumed.
        #expect(try await restored.json(.GET, "/admin/queue", headers: bearer(adminKey)).1["paused"] == true)
        #expect(try await restored.json(.POST, "/admin/queue/resume", nil, headers: bearer(adminKey)).0 == 200)
        for id in tasks.keys where !Self.finalStates.contains(tasks[id]?["status"]?.stringValue ?? "") {
            #expect(try await restored.waitForTask(id)["status"] == "succeeded")
        }

        // The keys: alice's works (as a user), root's as an admin; a made-up one does not.
        let (listed, keys) = try await restored.json(.GET, "/admin/keys", headers: bearer(adminKey))
        #expect(listed == 200 && keys["keys"]?.arrayValue?.count == 2, "\(keys)")
        #expect(try await restored.json(.GET, "/tasks", headers: bearer(userKey)).0 == 200)
        #expect(try await restored.json(.GET, "/admin/keys", headers: bearer(userKey)).0 == 403)
        #expect(try await restored.json(.GET, "/tasks", headers: bearer("sdbox_nope_nope")).0 == 401)
        #expect(try await Self.models(of: restored) == originalModels)
    }

    @Test func withModelsTheBackupHoldsTheModelFiles() async throws {
        let server = try await ServerProcess(config: Self.config, models: ["alpha.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let originalModels = try await Self.models(of: server)
        let archive = Self.temporaryPath("backup") + ".tar"
        defer { unlink(archive) }
        let backup = try await runSDBox(["backup", "--data-dir", server.dataDirectory, "--with-models", archive])
        #expect(backup.status == 0 && backup.output.contains("models: 2 files"), "\(backup.output)")  // the checkpoint and the checksum cache
        let folder = Self.temporaryPath("restored")
        let restore = try await runSDBox(["restore", "--data-dir", folder, archive])
        #expect(restore.status == 0 && !restore.output.contains("models: not in this backup"), "\(restore.output)")
        let file = "/models/Stable-diffusion/alpha.safetensors"
        #expect(FileManager.default.contents(atPath: folder + file) == FileManager.default.contents(atPath: server.dataDirectory + file))
        let restored = try await ServerProcess(config: Self.config, dataDirectory: folder)
        defer { restored.destroy() }
        #expect(try await Self.models(of: restored) == originalModels)
        #expect(try await restored.json(.POST, "/txt2img", ["stable_diffusion_model": "alpha", "prompt": "p", "steps": 2, "width": 64, "height": 64]).1["status"] == "succeeded")
    }

    @Test func anArchiveThatIsNotABackupIsRefused() async throws {
        let folder = Self.temporaryPath("restored")
        let archive = Self.temporaryPath("plain") + ".tar"
        defer { unlink(archive) }
        try Data(repeating: 0, count: 4096).write(to: URL(fileURLWithPath: archive))
        let restore = try await runSDBox(["restore", "--data-dir", folder, archive])
        #expect(restore.status != 0 && restore.output.contains("not an sdbox backup"), "\(restore.output)")
        #expect(!FileManager.default.fileExists(atPath: folder))
    }
}

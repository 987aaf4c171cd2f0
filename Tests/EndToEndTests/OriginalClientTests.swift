import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// What clients of the original serverless edition rely on beyond the shapes: the `taskId` header and
/// the caller's options.
@Suite(.serialized, .timeLimit(.minutes(2))) struct OriginalClientTests {
    @Test func aClientChosenTaskIdMakesTheSubmissionIdempotent() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nauth: {required: true}")
        defer { server.destroy() }
        let alice = try await server.addKey(user: "alice", role: "user")
        let bob = try await server.addKey(user: "bob", role: "user")
        let body = try (["prompt": "fox", "steps": 2, "width": 64, "height": 64] as JSONValue).encoded()

        let first = try await server.response(.POST, "/txt2img", body: body, headers: bearer(alice) + [("taskId", "order-1234"), ("Request-Type", "async")])
        #expect(first.status == 200)
        #expect(first.headers.first(name: "taskId") == "order-1234")
        let accepted = try JSONValue(parsing: first.body)
        #expect(accepted["taskId"] == "order-1234" && accepted["status"] == "waiting")
        // The same id again, sync this time: the one task's outcome, never a second task.
        let again = try await server.response(.POST, "/txt2img", body: body, headers: bearer(alice) + [("taskId", "order-1234")])
        let answer = try JSONValue(parsing: again.body)
        #expect(again.status == 200 && answer["taskId"] == "order-1234" && answer["status"] == "succeeded", "\(answer)")
        #expect(again.headers.first(name: "taskId") == "order-1234")
        let (_, listed) = try await server.json(.GET, "/tasks", headers: bearer(alice))
        #expect(listed["tasks"]?.arrayValue?.count == 1)
        // Without the header, each submission is its own task with the id in the header.
        let fresh = try await server.response(.POST, "/txt2img", body: body, headers: bearer(alice) + [("Request-Type", "async")])
        let freshAnswer = try JSONValue(parsing: fresh.body)
        let freshID = try #require(freshAnswer["taskId"]?.stringValue)
        #expect(freshID != "order-1234" && fresh.headers.first(name: "taskId") == freshID)

        // Another user's id is not handed out; a malformed id is refused.
        let stolen = try await server.response(.POST, "/txt2img", body: body, headers: bearer(bob) + [("taskId", "order-1234")])
        #expect(stolen.status == 409, "\(String(decoding: stolen.body, as: UTF8.self))")
        let malformed = try await server.response(.POST, "/txt2img", body: body, headers: bearer(alice) + [("taskId", "../x")])
        let refusal = try JSONValue(parsing: malformed.body)
        #expect(malformed.status == 400 && refusal["field"] == "taskId")
        #expect(try await server.json(.GET, "/tasks", headers: bearer(bob)).1["tasks"]?.arrayValue?.count == 0)
    }

    @Test func optionsSetWithTheOriginalsRouteApplyToTaskAPIGenerations() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let (status, answer) = try await server.json(.POST, "/options", ["data": ["CLIP_stop_at_last_layers": 2, "eta_noise_seed_delta": 31337]])
        #expect(status == 200 && answer == ["message": "success"])
        #expect(try await server.json(.POST, "/options", ["CLIP_stop_at_last_layers": 2]).0 == 400, "options outside data")
        #expect(try await server.json(.POST, "/options", ["data": ["sd_model_checkpoint": "nope.safetensors"]]).0 == 404)

        // The request's own override_settings win over the stored options.
        let (_, done) = try await server.json(.POST, "/txt2img", [
            "prompt": "fox", "steps": 2, "width": 64, "height": 64, "override_settings": ["eta_noise_seed_delta": 7],
        ])
        let id = try #require(done["taskId"]?.stringValue)
        let overrides = try await server.json(.GET, "/tasks/\(id)/result").1["parameters"]?["override_settings"]
        #expect(overrides?["CLIP_stop_at_last_layers"] == 2 && overrides?["eta_noise_seed_delta"] == 7, "\(String(describing: overrides))")
        // The A1111 routes read the same options.
        #expect(try await server.json(.GET, "/sdapi/v1/options").1["CLIP_stop_at_last_layers"] == 2)
    }

    @Test func strictLorasKeepsRefusingALoraTheBoxLacks() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nlimits: {strictLoras: true}")
        defer { server.destroy() }
        let (status, answer) = try await server.json(.POST, "/txt2img", ["prompt": "x <lora:ghost:0.7>", "steps": 1, "width": 64, "height": 64])
        #expect(status == 400 && answer["field"] == "prompt" && answer["detail"]?.stringValue?.contains("ghost") == true, "\(answer)")
        // A client cannot write sdbox's own info fields.
        let (_, done) = try await server.json(.POST, "/txt2img", ["prompt": "x", "steps": 1, "width": 64, "height": 64, "sdbox_info": ["lorasNotFound": ["forged"]]])
        let info = try await server.json(.GET, "/tasks/\(done["taskId"]?.stringValue ?? "")/result").1["info"]
        #expect(info?["lorasNotFound"] == nil, "\(String(describing: info))")
    }

    @Test func restartRenewsEveryWorkerWithoutFailingATask() async throws {
        let server = try await ServerProcess(config: pacedWorkers)
        defer { server.destroy() }
        // The running task is long (about 3 s) so that the restart arrives while it runs even on a loaded
        // machine; were it done first, the queued task would take the old worker before the restart.
        let long: JSONValue = ["prompt": "slow", "steps": 150, "width": 512, "height": 512]
        let short: JSONValue = ["prompt": "slow", "steps": 10, "width": 256, "height": 256]
        let (_, first) = try await server.json(.POST, "/txt2img", long, headers: [("Request-Type", "async")])
        let (_, second) = try await server.json(.POST, "/txt2img", short, headers: [("Request-Type", "async")])
        let running = try #require(first["taskId"]?.stringValue)
        let waiting = try #require(second["taskId"]?.stringValue)
        while try await server.json(.GET, "/tasks/\(running)/progress").1["status"] != "running" {
            try await Task.sleep(for: .milliseconds(20))
        }
        let before = server.workerPIDs()
        let (status, answer) = try await server.json(.POST, "/restart")
        #expect(status == 200 && answer == ["message": "success"])
        #expect(try await server.waitForTask(running)["status"] == "succeeded", "the running task finished first")
        #expect(try await server.waitForTask(waiting)["status"] == "succeeded", "the waiting task ran on a new worker")
        let after = server.workerPIDs()
        #expect(!after.isEmpty && Set(after).isDisjoint(with: before), "before \(before), after \(after)")
    }

    @Test func theOriginalsModelRoutesRegisterRepointAndDelete() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        // A checkpoint where the original's bucket had it, as a key of the object store.
        let stored = server.dataDirectory + "/objects/models/Stable-diffusion"
        try FileManager.default.createDirectory(atPath: stored, withIntermediateDirectories: true)
        try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: stored + "/fox.safetensors"))
        let register: JSONValue = ["type": "stableDiffusion", "name": "fox.safetensors", "ossPath": "models/Stable-diffusion/fox.safetensors"]
        #expect(try await server.json(.POST, "/models", register).1 == ["message": "register success"])
        #expect(try await server.json(.POST, "/models", register).1 == ["message": "models existed"])
        let (missing, refusal) = try await server.json(.POST, "/models", ["type": "stableDiffusion", "name": "x.safetensors"])
        #expect(missing == 400 && refusal["field"] == "ossPath" && refusal["message"]?.stringValue?.isEmpty == false)
        #expect(try await server.json(.POST, "/models", ["type": "stableDiffusion", "name": "y.safetensors", "ossPath": "nowhere/y.safetensors"]).0 == 400)

        let (found, model) = try await server.json(.GET, "/models/fox.safetensors")
        #expect(found == 200 && model["name"] == "fox.safetensors" && model["type"] == "stableDiffusion" && model["ossPath"]?.stringValue != nil)
        #expect(try await server.json(.GET, "/models/nope.safetensors").0 == 404)
        let (_, made) = try await server.json(.POST, "/txt2img", ["stable_diffusion_model": "fox.safetensors", "prompt": "fox", "steps": 2, "width": 64, "height": 64])
        #expect(made["status"] == "succeeded", "\(made)")

        // PUT points the model at another file (an absolute path on the box); its record is hashed again.
        let other = server.dataDirectory + "/other.safetensors"
        try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: other))
        #expect(try await server.json(.PUT, "/models/fox.safetensors", ["ossPath": .string(other)]).1 == ["message": "success"])
        #expect(try await server.json(.PUT, "/models/fox.safetensors", ["ossPath": .string(other)]).1 == ["message": "models existed and not change"])
        let (unregistered, notRegistered) = try await server.json(.PUT, "/models/ghost.safetensors", ["ossPath": .string(other)])
        #expect(unregistered == 404 && notRegistered["message"]?.stringValue?.contains("register first") == true)
        let relinked = try FileManager.default.destinationOfSymbolicLink(atPath: server.dataDirectory + "/models/Stable-diffusion/fox.safetensors")
        #expect(relinked == other)

        // DELETE keeps the record as deleted; the model is gone for generations, and its function with it.
        func listsFox() async throws -> Bool {
            try await server.json(.GET, "/list/sdapi/functions").1["functions"]?.arrayValue?.contains { $0["model"] == "fox.safetensors" } == true
        }
        #expect(try await listsFox())
        #expect(try await server.json(.DELETE, "/models/fox.safetensors").1 == ["message": "delete success"])
        #expect(try await listsFox() == false, "the deleted model's function is gone")
        #expect(try await server.json(.GET, "/models/fox.safetensors").1["status"] == "deleted")
        #expect(try await server.json(.GET, "/models").1.arrayValue?.contains { $0["name"] == "fox.safetensors" && $0["status"] == "deleted" } == true)
        #expect(try await server.json(.GET, "/sdapi/v1/sd-models").1.arrayValue?.contains { $0["filename"]?.stringValue?.hasSuffix("fox.safetensors") == true } == false)
        #expect(try await server.json(.DELETE, "/models/fox.safetensors").0 == 404)
        #expect(try await server.json(.POST, "/txt2img", ["stable_diffusion_model": "fox.safetensors", "prompt": "fox", "steps": 2, "width": 64, "height": 64]).0 == 404)
        // Registering it again brings it back.
        #expect(try await server.json(.POST, "/models", register).1 == ["message": "register success"])
        #expect(try await server.json(.GET, "/models/fox.safetensors").1["status"] != "deleted")
        #expect(try await listsFox())
    }

    @Test func usersSignInWithTheOriginalsLoginAndTokenHeader() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nauth: {required: true, sessionSeconds: 5}")
        defer { server.destroy() }
        // An operator adds a user; the password comes on standard input, never on the command line.
        let log = server.dataDirectory + "/users-add.log"
        let pid = try spawn(
            ["/bin/sh", "-c", "printf '%s\\n' \"$PASSWORD\" | \"$SDBOX\" users add alice --data-dir \"$DATA\""], output: log,
            environment: ["PASSWORD": "correct horse", "SDBOX": ServerProcess.binary, "DATA": server.dataDirectory]
        )
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect((status >> 8) & 0xff == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")

        let (wrong, refusal) = try await server.json(.POST, "/login", ["userName": "alice", "password": "wrong horse"])
        #expect(wrong == 401 && refusal["message"]?.stringValue?.contains("login fail") == true)
        for name in ["nobody", "", String(repeating: "x", count: 600)] {
            #expect(try await server.json(.POST, "/login", ["userName": .string(name), "password": "correct horse"]).0 == 401, "\(name.prefix(10))")
        }
        // As the original's login.py sends it: capitalised keys, no Content-Type.
        let login = try await server.response(.POST, "/login", body: Data(#"{"UserName": "alice", "Password": "correct horse"}"#.utf8))
        let signedIn = try JSONValue(parsing: login.body)
        #expect(login.status == 200 && signedIn["userName"] == "alice" && signedIn["message"] == "login success", "\(signedIn)")
        let token = try #require(signedIn["token"]?.stringValue)
        #expect(token.count == 64)

        // The token works in the original's header and as a bearer key, as alice.
        let (made, task) = try await server.json(.POST, "/txt2img", ["prompt": "fox", "steps": 1, "width": 64, "height": 64], headers: [("token", token)])
        #expect(made == 200 && task["status"] == "succeeded", "\(task)")
        #expect(try await server.json(.GET, "/tasks", headers: bearer(token)).1["tasks"]?.arrayValue?.first?["user"] == "alice")
        #expect(try await server.json(.GET, "/workers", headers: [("token", token)]).0 == 403, "a user's session is not an admin's")

        // Expired after sessionSeconds unused: the original's 410 (renewal by use: LMDBUserStoreTests).
        try await Task.sleep(for: .seconds(6))
        let (expired, gone) = try await server.json(.GET, "/tasks", headers: [("token", token)])
        #expect(expired == 410 && gone["message"]?.stringValue?.contains("login") == true, "\(gone)")
        #expect(try await server.json(.GET, "/tasks", headers: bearer(token)).0 == 401)
        #expect(try await server.json(.GET, "/tasks", headers: [("token", "made-up")]).0 == 410)

        // Guessing is slowed: after five wrong passwords, the next try waits (429), even with the right one.
        for _ in 0..<5 { #expect(try await server.json(.POST, "/login", ["userName": "alice", "password": "guess guess"]).0 == 401) }
        let (throttled, wait) = try await server.json(.POST, "/login", ["userName": "alice", "password": "correct horse"])
        #expect(throttled == 429 && wait["retryAfter"]?.integerValue == 1, "\(wait)")
        try await Task.sleep(for: .milliseconds(1100))
        #expect(try await server.json(.POST, "/login", ["userName": "alice", "password": "correct horse"]).0 == 200)

        // Admins manage users by API too; hashes are never shown.
        let admin = try await server.addKey(user: "boss", role: "admin")
        let (created, bob) = try await server.json(.POST, "/admin/users", ["userName": "bob", "password": "battery staple", "role": "admin"], headers: bearer(admin))
        #expect(created == 201 && bob == ["userName": "bob", "role": "admin", "createdAt": bob["createdAt"] ?? nil])
        #expect(try await server.json(.POST, "/admin/users", ["userName": "carol", "password": "short"], headers: bearer(admin)).0 == 400)
        let (_, users) = try await server.json(.GET, "/admin/users", headers: bearer(admin))
        #expect(users.arrayValue?.compactMap { $0["userName"]?.stringValue } == ["alice", "bob"])
        #expect(!String(describing: users).contains("$2"), "no bcrypt hash in the answer")
        #expect(try await server.json(.DELETE, "/admin/users/alice", headers: bearer(admin)).0 == 200)
        #expect(try await server.json(.POST, "/login", ["userName": "alice", "password": "correct horse"]).0 == 401)
    }
}

import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// API keys, roles, isolation between users, and the per-key and per-user limits, through the real server.
@Suite(.serialized, .timeLimit(.minutes(2))) struct AuthTests {
    @Test func keysRolesAndIsolation() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nauth:\n  required: true\n")
        defer { server.destroy() }
        let alice = try await server.addKey(user: "alice", role: "user")
        let bob = try await server.addKey(user: "bob", role: "user")
        let admin = try await server.addKey(user: "ops", role: "admin")
        let body: JSONValue = ["prompt": "a fox", "steps": 1, "width": 64, "height": 64]

        // No key, or a wrong one: 401 with a JSON error. Health needs none.
        let (none, noneAnswer) = try await server.json(.POST, "/txt2img", body)
        #expect(none == 401)
        #expect(noneAnswer["error"] == "API key required")
        #expect(try await server.json(.POST, "/txt2img", body, headers: bearer("sdbox_AAAAAAAAAAAA_" + String(repeating: "x", count: 36))).0 == 401)
        #expect(try await server.json(.GET, "/tasks", headers: [("Authorization", "Bearer nonsense")]).0 == 401)
        #expect(try await server.json(.GET, "/healthz").0 == 200)

        // Alice generates; her images are hers, reachable by their signed URLs without a key.
        let (made, result) = try await server.json(.POST, "/txt2img", body, headers: bearer(alice))
        #expect(made == 200, "\(result)")
        let id = try #require(result["taskId"]?.stringValue)
        let url = try #require(result["ossUrl"]?.arrayValue?.first?.stringValue)
        #expect(url.contains("/objects/images/alice/"))
        #expect(try await server.request(.GET, url).0 == 200)
        #expect(try await server.json(.GET, "/tasks/\(id)/result", headers: [("X-API-Key", alice)]).0 == 200)
        #expect(try await server.json(.GET, "/tasks/\(id)/result", headers: [("Authorization", "bEaReR  \(alice)\t")]).0 == 200)
        #expect(try await server.json(.GET, "/tasks/\(id)/result", headers: [("Authorization", "Basic \(alice)")]).0 == 401)

        // Bob cannot see, cancel or list it: 404, as if it did not exist.
        #expect(try await server.json(.GET, "/tasks/\(id)/result", headers: bearer(bob)).0 == 404)
        #expect(try await server.json(.POST, "/tasks/\(id)/cancellation", headers: bearer(bob)).0 == 404)
        #expect(try await server.json(.GET, "/tasks", headers: bearer(bob)).1["tasks"]?.arrayValue?.isEmpty == true)
        // The admin sees every user's tasks.
        #expect(try await server.json(.GET, "/tasks/\(id)/result", headers: bearer(admin)).0 == 200)
        #expect(try await server.json(.GET, "/tasks?user=alice", headers: bearer(admin)).1["tasks"]?.arrayValue?.count == 1)

        // Users are kept off admin routes.
        for (method, path) in [(HTTPMethod.GET, "/admin/keys"), (.GET, "/workers"), (.GET, "/metrics"), (.POST, "/batch_update_sd_resource"), (.DELETE, "/admin/models/stableDiffusion/demo.safetensors")] {
            #expect(try await server.request(method, path, headers: bearer(alice)).0 == 403, "\(path)")
        }

        // Keys through the admin API: made, listed without secrets, revoked.
        let (created, key) = try await server.json(.POST, "/admin/keys", ["user": "carol", "role": "user"], headers: bearer(admin))
        #expect(created == 201)
        let carol = try #require(key["key"]?.stringValue)
        #expect(try await server.json(.GET, "/tasks", headers: bearer(carol)).0 == 200)
        let (_, listed) = try await server.json(.GET, "/admin/keys", headers: bearer(admin))
        #expect(listed["keys"]?.arrayValue?.count == 4)
        #expect(!String(decoding: try listed.encoded(), as: UTF8.self).contains(carol.suffix(36)))
        let (revoked, _) = try await server.json(.DELETE, "/admin/keys/\(try #require(key["id"]?.stringValue))", headers: bearer(admin))
        #expect(revoked == 200)
        #expect(try await server.json(.GET, "/tasks", headers: bearer(carol)).0 == 401)
        let (badUser, _) = try await server.json(.POST, "/admin/keys", ["user": "../evil", "role": "user"], headers: bearer(admin))
        #expect(badUser == 400)
        let (listOutput) = try await runSDBox(["keys", "list", "--data-dir", server.dataDirectory])
        #expect(listOutput.output.contains("carol") && listOutput.output.contains("revoked"))
    }

    @Test func keysAreRequiredBeyondLoopback() async throws {
        let (status, output) = try await runSDBox(["serve", "--host", "0.0.0.0", "--port", "1", "--data-dir", "/tmp/sdbox-unused"])
        #expect(status != 0)
        #expect(output.contains("auth.required"), "\(output)")
    }

    @Test func limitsPerKeyAndPerUser() async throws {
        let server = try await ServerProcess(config: """
            auth: {required: true}
            limits: {requestsPerMinute: 5, maxQueuedPerUser: 1, maxPixels: 8192}
            scheduler: {maxInstances: 1}
            workers:
              reference: {stepMilliseconds: 20, minimumStepMilliseconds: 5}
            """)
        defer { server.destroy() }
        let alice = try await server.addKey(user: "alice", role: "user")
        // Pixels: 64x64 (4096) fits in 8192; three images of 64x64 do not.
        let (tooMany, tooManyAnswer) = try await server.json(.POST, "/txt2img", ["steps": 1, "width": 64, "height": 64, "batch_size": 3], headers: bearer(alice))
        #expect(tooMany == 422, "\(tooManyAnswer)")
        // One queued task per user: a second one while the first runs is refused.
        let (first, _) = try await server.json(.POST, "/txt2img", ["steps": 150, "width": 64, "height": 64], headers: bearer(alice) + [("Request-Type", "async")])
        #expect(first == 200)
        let (second, secondAnswer) = try await server.json(.POST, "/txt2img", ["steps": 1, "width": 64, "height": 64], headers: bearer(alice) + [("Request-Type", "async")])
        #expect(second == 429)
        #expect(secondAnswer["error"] == "queue full")
        // Five requests a minute per key: the next one is refused with a retry time.
        var statuses: [Int] = []
        for _ in 0..<3 { statuses.append(try await server.json(.GET, "/tasks", headers: bearer(alice)).0) }
        #expect(statuses == [200, 200, 429])
        #expect(try await server.json(.GET, "/tasks", headers: bearer(alice)).1["retryAfter"] != nil)
    }
}

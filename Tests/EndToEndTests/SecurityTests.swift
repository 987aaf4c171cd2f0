import Foundation
import ImageCodec
import NIOHTTP1
import SDBoxCore
import Testing

/// A hostile customer with a user key, through the real server: no admin route behind another spelling of
/// its path, no stall from input that a backtracking parser chews on, no task hung by a body nested too
/// deep, no unbounded storage, no jumping the queue past other users, and no connection held forever.
@Suite(.serialized, .timeLimit(.minutes(3))) struct SecurityTests {
    /// Keys required, tasks slow enough to stay queued while a test looks at the queue.
    static let slowQueue = """
        auth: {required: true}
        scheduler: {maxInstances: 1}
        workers:
          reference:
            stepMilliseconds: 200
            minimumStepMilliseconds: 200
        """

    @Test func adminRoutesHoldWhateverThePathSpelling() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nauth:\n  required: true\n")
        defer { server.destroy() }
        let mallory = try await server.addKey(user: "mallory", role: "user")
        let admin = try await server.addKey(user: "ops", role: "admin")
        let (status, made) = try await server.json(.POST, "//admin/keys", ["user": "mallory", "role": "admin"], headers: bearer(mallory))
        #expect(status == 403, "\(made)")
        // Spellings the router reads as the admin route: judged as that route.
        for (method, path) in [
            (HTTPMethod.GET, "//admin/keys"), (.GET, "//workers"), (.GET, "//metrics"), (.POST, "//del/sd/functions"),
            (.PUT, "//admin/models/stableDiffusion/x.safetensors"), (.GET, "/admin/keys/"), (.GET, "///list//sdapi/functions"),
            (.POST, "//sdapi/v1/unload-checkpoint"),
        ] {
            let answer = try await server.response(method, path, body: Data("{}".utf8), headers: bearer(mallory))
            #expect(answer.status == 403, "\(method) \(path): \(answer.status) \(String(decoding: answer.body, as: UTF8.self))")
        }
        // Spellings it does not read as a route at all (dot segments): no route, no access.
        for path in ["/./workers", "/x/../metrics", "/admin/./keys"] {
            let answer = try await server.response(.GET, path, headers: bearer(mallory))
            #expect([400, 404].contains(answer.status), "\(path): \(answer.status)")
        }
        let (_, keys) = try await server.json(.GET, "/admin/keys", headers: bearer(admin))
        #expect(keys["keys"]?.arrayValue?.count == 2, "no key was made: \(keys)")
    }

    @Test func hostileTextIsReadInLinearTime() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        // A PNG whose infotext's last line is 400 KB without a colon: a backtracking parse takes hours.
        let infotext = "p\n" + String(repeating: "a ", count: 200_000)
        let png = PNGTextChunks.inserting([("parameters", infotext)], into: try PNGCodec.encode(PixelImage(width: 8, height: 8)))
        let (status, info) = try await server.json(.POST, "/sdapi/v1/png-info", ["image": .string(png.base64EncodedString())])
        #expect(status == 200)
        #expect(info["parameters"]?["Prompt"]?.stringValue?.count == infotext.count - 1)
        // An infotext over 1 MiB is refused, as A1111's PIL refuses it.
        let huge = PNGTextChunks.inserting([("parameters", String(repeating: "a", count: 1 << 21))], into: try PNGCodec.encode(PixelImage(width: 8, height: 8)))
        #expect(try await server.json(.POST, "/sdapi/v1/png-info", ["image": .string(huge.base64EncodedString())]).0 == 422)
        // A prompt of unclosed LoRA tags: no tag, so nothing to check, found in one pass.
        let prompt = String(repeating: "<lora:a:", count: 8000)
        let (generated, answer) = try await server.json(.POST, "/txt2img", ["prompt": .string(prompt), "steps": 1, "width": 64, "height": 64])
        #expect(generated == 200, "\(answer)")
        // A closed tag naming a LoRA the box lacks is still found, and reported.
        let (withTag, tagged) = try await server.json(.POST, "/txt2img", ["prompt": .string(prompt + "<lora:missing:1>"), "steps": 1, "width": 64, "height": 64])
        #expect(withTag == 200)
        let missing = try await server.json(.GET, "/tasks/\(tagged["taskId"]?.stringValue ?? "")/result").1["info"]?["lorasNotFound"]
        #expect(missing?.arrayValue?.count == 1, "one tag, read as A1111's <(\\w+):([^>]+)> reads it: \(String(describing: missing))")
    }

    /// `comments` nested `depth` objects deep.
    func nested(_ depth: Int) -> JSONValue {
        var value: JSONValue = "bottom"
        for _ in 0..<depth { value = ["c": value] }
        return value
    }

    @Test func bodiesNestedTooDeepAreRefusedAndNothingHangs() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        for depth in [509, 510, 2000] {
            let body = try (["steps": 1, "width": 64, "height": 64, "comments": nested(depth)] as JSONValue).encoded()
            let (status, answer) = try jsonOf(try await server.request(.POST, "/txt2img", body: body))
            #expect(status == 400, "depth \(depth): \(answer)")
            #expect(answer["detail"]?.stringValue?.contains("\(JSONLimits.maxDepth) levels") == true, "\(answer)")
            #expect((answer["detail"]?.stringValue?.count ?? 0) < 1000)
        }
        let (accepted, result) = try await server.json(.POST, "/txt2img", ["steps": 1, "width": 64, "height": 64, "comments": nested(60)])
        #expect(accepted == 200 && result["status"] == "succeeded", "\(result)")
        #expect(try await server.json(.GET, "/tasks?state=queued,running").1["tasks"] == [])
    }

    @Test func storedRequestsAreBoundedPerUser() async throws {
        let server = try await ServerProcess(config: Self.slowQueue + "\nlimits: {maxQueuedBytesPerUser: 1048576}\n")
        defer { server.destroy() }
        let alice = try await server.addKey(user: "alice", role: "user")
        let bob = try await server.addKey(user: "bob", role: "user")
        // One field over limits.maxPromptBytes: 400 naming it.
        let long: JSONValue = ["prompt": .string(String(repeating: "a", count: 70_000)), "steps": 1, "width": 64, "height": 64]
        let (refused, reason) = try await server.json(.POST, "/txt2img", long, headers: bearer(alice) + [("Request-Type", "async")])
        #expect(refused == 400 && reason["field"] == "prompt", "\(reason)")
        // 400 KB of comments each: two fit in alice's 1 MiB, the third waits for them; bob is not affected.
        let bulky: JSONValue = ["steps": 100, "width": 64, "height": 64, "comments": ["text": .string(String(repeating: "b", count: 400_000))]]
        var ids: [String] = []
        for _ in 0..<2 {
            let (status, answer) = try await server.json(.POST, "/txt2img", bulky, headers: bearer(alice) + [("Request-Type", "async")])
            #expect(status == 200, "\(answer)")
            ids += [answer["taskId"]?.stringValue].compactMap { $0 }
        }
        let (full, fullAnswer) = try await server.json(.POST, "/txt2img", bulky, headers: bearer(alice) + [("Request-Type", "async")])
        #expect(full == 429 && fullAnswer["error"] == "queue full", "\(fullAnswer)")
        let (other, otherAnswer) = try await server.json(.POST, "/txt2img", bulky, headers: bearer(bob) + [("Request-Type", "async")])
        #expect(other == 200, "\(otherAnswer)")
        ids += [otherAnswer["taskId"]?.stringValue].compactMap { $0 }
        // One request over the whole allowance can never fit: 413.
        let tooBig: JSONValue = ["steps": 1, "width": 64, "height": 64, "comments": ["text": .string(String(repeating: "c", count: 1_100_000))]]
        #expect(try await server.json(.POST, "/txt2img", tooBig, headers: bearer(bob) + [("Request-Type", "async")]).0 == 413)
        let adminKey = try await server.addKey(user: "ops", role: "admin")
        for id in ids { _ = try await server.json(.POST, "/tasks/\(id)/cancellation", headers: bearer(adminKey)) }
    }

    @Test func priorityOrdersOnlyAUsersOwnTasks() async throws {
        let server = try await ServerProcess(config: Self.slowQueue)
        defer { server.destroy() }
        let alice = try await server.addKey(user: "alice", role: "user")
        let bob = try await server.addKey(user: "bob", role: "user")
        let admin = try await server.addKey(user: "ops", role: "admin")
        func submit(_ key: String, priority: Int = 0) async throws -> String {
            let body: JSONValue = ["steps": 100, "width": 64, "height": 64, "priority": .integer(Int64(priority))]
            let (status, answer) = try await server.json(.POST, "/txt2img", body, headers: bearer(key) + [("Request-Type", "async")])
            #expect(status == 200, "\(answer)")
            return try #require(answer["taskId"]?.stringValue)
        }
        func position(_ id: String) async throws -> Int? {
            try await server.json(.GET, "/tasks/\(id)/progress", headers: bearer(admin)).1["queuePosition"]?.integerValue.map(Int.init)
        }
        var ids: [String] = []
        for _ in 0..<5 { ids.append(try await submit(alice)) }
        let bobs = try await submit(bob)
        ids.append(bobs)
        let before = try #require(try await position(bobs))
        for _ in 0..<20 { ids.append(try await submit(alice, priority: 100)) }
        // Users take turns: bob waits for at most one of alice's tasks, however many she queues and
        // with whatever priority.
        let after = try #require(try await position(bobs))
        #expect(after <= before && after <= 2, "bob went from \(before) to \(after)")
        // Her priority still orders her own tasks: a priority-100 task is her next (or already running).
        let alicesNext = try await position(ids[6])
        #expect((alicesNext ?? 0) <= 2, "\(String(describing: alicesNext))")
        // An admin's priority orders across users.
        let urgent = try await submit(admin, priority: 50)
        ids.append(urgent)
        #expect(try await position(urgent) == 1)
        for id in ids { _ = try await server.json(.POST, "/tasks/\(id)/cancellation", headers: bearer(admin)) }
    }

    @Test func connectionsHaveDeadlinesAndCaps() async throws {
        let server = try await ServerProcess(config: fastWorkers + """

            connections: {headerTimeoutSeconds: 2, bodyTimeoutSeconds: 2, minBodyBytesPerSecond: 1000, maxConnectionsPerAddress: 8}
            """)
        defer { server.destroy() }
        // A connection that sends nothing: closed at the head's deadline.
        let silent = try RawConnection(port: server.port)
        #expect(await silent.readUntilClosed(seconds: 30) == Data(), "a silent connection was kept")
        // A head trickled in, a line every half second: cut off by the head's deadline.
        let slowHead = try RawConnection(port: server.port)
        slowHead.send("GET /healthz HTTP/1.1\r\n")
        #expect(try await slowHead.trickle((0..<40).map { "X-\($0): y\r\n" }, every: .milliseconds(500)), "a trickled head kept its connection")
        // A body trickled in, a byte every half second: cut off by the body's deadline.
        let slowBody = try RawConnection(port: server.port)
        slowBody.send("POST /txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        #expect(try await slowBody.trickle(Array(repeating: " ", count: 40), every: .milliseconds(500)), "a trickled body kept its connection")
        // A method HTTP does not know: 400 and closed, not left waiting.
        let unknown = try RawConnection(port: server.port)
        unknown.send("XFOO / HTTP/1.1\r\nHost: x\r\n\r\n")
        let answer = try #require(await unknown.readUntilClosed(seconds: 30), "XFOO was neither answered nor closed")
        #expect(String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 400"))
        // A body announced over the limit: 413 before any of it is sent.
        let huge = try RawConnection(port: server.port)
        huge.send("POST /txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n")
        #expect(await huge.readSome(seconds: 30).hasPrefix("HTTP/1.1 413"))
        // Eight open connections from one address; the ninth is closed at once; the box still serves.
        var held = try (0..<8).map { _ in try RawConnection(port: server.port) }
        try await Task.sleep(for: .milliseconds(200))
        let ninth = try RawConnection(port: server.port)
        #expect(await ninth.readUntilClosed(seconds: 30) == Data(), "a ninth connection was kept")
        // Once they close (the server sees it in its own time), connections are taken again.
        held.removeAll()
        var served = false
        let deadline = ContinuousClock.now + .seconds(20)
        while !served, ContinuousClock.now < deadline {
            served = (try? await server.json(.GET, "/healthz").0) == 200
            if !served { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(served, "the box did not serve again after the held connections closed")
        // Connections closed before their first request are not errors of the server's.
        #expect(!server.log.contains(" error "), "\(server.log.split(separator: "\n").filter { $0.contains(" error ") })")
    }

    @Test func aWebSocketUpgradeWithFramesAttachedIsServed() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        // The upgrade request and a masked text frame in one write: bytes the HTTP decoder still holds
        // when the connection switches protocols.
        let frame: [UInt8] = [0x81, 0x80 | 2, 1, 2, 3, 4, UInt8(ascii: "{") ^ 1, UInt8(ascii: "}") ^ 2]
        let connection = try RawConnection(port: server.port)
        connection.send(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" + String(decoding: frame, as: UTF8.self)
        )
        #expect(await connection.readSome(seconds: 30).hasPrefix("HTTP/1.1 101"))
        #expect(try await server.json(.GET, "/healthz").0 == 200, "the server lives")
    }

    @Test func concurrentSubmissionsCannotOvershootAUsersShare() async throws {
        let server = try await ServerProcess(config: Self.slowQueue + "\nlimits: {maxQueuedPerUser: 3}\n")
        defer { server.destroy() }
        let alice = try await server.addKey(user: "alice", role: "user")
        let body: JSONValue = ["steps": 100, "width": 64, "height": 64]
        let statuses = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for _ in 0..<12 {
                group.addTask {
                    let (status, answer) = try await server.json(.POST, "/txt2img", body, headers: bearer(alice) + [("Request-Type", "async")])
                    return (status, answer["taskId"]?.stringValue)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses.filter { $0.0 == 200 }.count == 3, "\(statuses.map(\.0))")
        #expect(statuses.filter { $0.0 == 429 }.count == 9)
        let admin = try await server.addKey(user: "ops", role: "admin")
        for id in statuses.compactMap(\.1) { _ = try await server.json(.POST, "/tasks/\(id)/cancellation", headers: bearer(admin)) }
    }

    @Test func aStalledClientDoesNotHoldUpShutdown() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let partialHead = try RawConnection(port: server.port)
        partialHead.send("GET /healthz HTTP/1.1\r\nX-Slow: ")
        let unknown = try RawConnection(port: server.port)
        unknown.send("XF")
        // Its workers stop within their grace period; the clients hold nothing up.
        #expect(try await server.stop(signal: SIGTERM, within: .seconds(20)), "sdbox was still running 20 s after SIGTERM")
        #expect(await partialHead.readUntilClosed(seconds: 5) != nil)
    }
}

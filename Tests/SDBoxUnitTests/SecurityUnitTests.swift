import Foundation
import HTTPTypes
@testable import SDBoxCore
@testable import Scheduler
import Testing
@testable import Appliance

@testable import SDBoxServer

/// Random strings over a small alphabet, reproducible from a seed.
func randomStrings(alphabet: [String], count: Int, maxLength: Int, seed: UInt64) -> [String] {
    var random = SplitMix64(seed: seed)
    return (0..<count).map { _ in
        (0..<Int(random.next() % UInt64(maxLength + 1))).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] }.joined()
    }
}

@Suite struct LinearParserTests {
    @Test func infotextPairsAreTheRegularExpressionsOnRandomLines() {
        let lines = randomStrings(
            alphabet: ["a", "b", "_", "1", " ", ":", ",", "\"", "\\", "-", "/", "\t", "é", "x: ", ", k: \"v, w\""], count: 3000,
            maxLength: 24, seed: 7
        )
        // A1111's `re_param`, read by a backtracking regular expression: the reference the one-pass reading matches.
        let reference = /\s*(\w[\w \-\/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/
        for line in lines {
            let expected = line.matches(of: reference).map { (String($0.output.1), String($0.output.2)) }
            let found = Infotext.parameters(in: Substring(line))
            #expect(found.map { $0.key } == expected.map { $0.0 } && found.map { $0.value } == expected.map { $0.1 }, "\(line.debugDescription)")
        }
    }

    @Test func loraNamesAreTheRegularExpressionsOnRandomPrompts() {
        let prompts = randomStrings(alphabet: ["<lora:", "a", "b", ":", ">", "<", " ", "0.5", "é"], count: 3000, maxLength: 16, seed: 11)
        for prompt in prompts {
            let expected = prompt.matches(of: /<lora:([^:>]+)(?::[^>]*)?>/).map { String($0.output.1) }
            #expect(LoraTags.names(in: prompt) == expected, "\(prompt.debugDescription)")
        }
    }

    @Test(.timeLimit(.minutes(1))) func hostileTextTakesOnePass() {
        // Both took seconds at a few tens of KB through backtracking, and hours at these sizes.
        let line = String(repeating: "a ", count: 500_000)
        #expect(Infotext.parameters(in: Substring(line)).isEmpty)
        let quotes = String(repeating: "kk: \"a, ", count: 100_000)
        #expect(Infotext.parameters(in: Substring(quotes)).count == 100_000)
        #expect(LoraTags.names(in: String(repeating: "<lora:a:", count: 200_000)).isEmpty)
        #expect(LoraTags.names(in: String(repeating: "<lora:a:1>", count: 100_000)).count == 100_000)
    }
}

@Suite struct JSONLimitsTests {
    func nested(_ depth: Int) -> String { String(repeating: "[", count: depth) + String(repeating: "]", count: depth) }

    @Test func depthAndKeysAreBounded() throws {
        #expect(throws: Never.self) { try JSONLimits.check(Array(nested(JSONLimits.maxDepth).utf8)) }
        #expect(throws: JSONLimitError.tooDeep) { try JSONLimits.check(Array(nested(JSONLimits.maxDepth + 1).utf8)) }
        #expect(throws: JSONLimitError.tooDeep) { try JSONValue(parsing: Array(nested(509).utf8)) }
        // Brackets, quotes and colons inside strings are text.
        let text = "{\"k\": \"" + String(repeating: "[{:\\\"", count: 1000) + "\"}"
        #expect(try JSONValue(parsing: Array(text.utf8))["k"]?.stringValue?.count == 4000)
        let wide = "{" + (0...JSONLimits.maxKeys).map { "\"k\($0)\":0" }.joined(separator: ",") + "}"
        #expect(throws: JSONLimitError.tooManyKeys) { try JSONLimits.check(Array(wide.utf8)) }
        // UTF-16 and UTF-32, which Foundation's decoder would read past this check, are refused.
        let deepUTF16 = "[\"∀\"," + nested(300) + "]"
        for encoding in [String.Encoding.utf16LittleEndian, .utf16BigEndian, .utf16, .utf32LittleEndian] {
            let bytes = try #require(deepUTF16.data(using: encoding))
            #expect(throws: JSONLimitError.notUTF8) { try JSONValue(parsing: bytes) }
        }
    }
}

@Suite struct WorkerPathTests {
    @Test(arguments: [
        ("/sdapi/v1/%6Fptions", "/sdapi/v1/options"), ("/sdapi/v1/server%2Dkill", "/sdapi/v1/server-kill"),
        ("//sdapi//v1/cmd-flags/", "/sdapi/v1/cmd-flags"), ("/sdapi/v1/./x/../memory", "/sdapi/v1/memory"),
        ("/controlnet/..%2F..%2Fsdapi%2Fv1%2Fserver-kill", "/sdapi/v1/server-kill"), ("/a/../../..", "/"),
        ("/controlnet/model%20list", "/controlnet/model list"), ("/x/%25", "/x/%"),
    ])
    func readsAPathAsUvicornDoes(raw: String, decoded: String) throws {
        let path = try WorkerPath(raw: raw)
        #expect(path.decoded == decoded)
        // What goes to the worker decodes back to exactly what was judged, and needs no second reading.
        let again = try WorkerPath(raw: path.encoded)
        #expect(again.decoded == decoded && again.encoded == path.encoded)
    }

    @Test(arguments: ["/x/%zz", "/x/%4", "/x/%00", "/x/%0A", "/x/%FF%FE"])
    func refusesPathsItCannotRead(raw: String) {
        #expect(throws: WorkerPathError.self) { try WorkerPath(raw: raw) }
    }

    @Test func everyPathButSdboxsOwnAndTheWorkersInternalsIsForwarded() throws {
        func forwarded(_ raw: String, _ method: HTTPRequest.Method) throws -> Bool {
            try WorkerPath(raw: raw).isForwarded(method: method.rawValue, reserved: ["tasks", "admin", "web", "login"])
        }
        #expect(try forwarded("/sdapi/v1/cmd-flags", .get))
        #expect(try forwarded("/sdapi/v1/interrogate", .post))
        #expect(try forwarded("/controlnet/detect", .post))
        #expect(try !forwarded("/sdapi/v1/cmd-flags", .post))
        for control in ["options", "progress", "unload-checkpoint", "reload-checkpoint", "server-kill", "server-restart", "server-stop", "train/embedding"] {
            #expect(try !forwarded("/sdapi/v1/\(control)", .post), "\(control)")
            #expect(try !forwarded("/sdapi/v1/\(control)", .get), "\(control)")
        }
        #expect(try forwarded("/controlnet", .get))
        #expect(try forwarded("/adetailer/v1/version", .get), "any extension's API, as the original forwards it")
        for own in ["/tasks/x", "/admin/keys", "/web/index.html", "/", "/login", "/sdapi/v2/x"] {
            #expect(try !forwarded(own, .get), "\(own)")
        }
        for inner in ["/internal/ping", "/internal/sysinfo", "/file=/etc/passwd", "/file/x", "/queue/join", "/api/predict", "/config", "/x/../internal/ping"] {
            #expect(try !forwarded(inner, .get), "\(inner)")
            #expect(try WorkerPath(raw: inner).isWorkerInternal, "\(inner)")
        }
    }
}

@Suite struct LoginThrottleTests {
    @Test func guessesWaitLongerAndLongerAndASuccessClears() throws {
        let throttle = LoginThrottle()
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        for second in 0..<5 {
            try throttle.check(name: "ann", address: "10.0.0.9", now: t0.addingTimeInterval(Double(second)))
            throttle.failed(name: "ann", address: "10.0.0.9", now: t0.addingTimeInterval(Double(second)))
        }
        // Five failures, the last at 4 s: the next try waits 1 s, then 2 s after the sixth failure.
        #expect(throws: APIError.self) { try throttle.check(name: "ann", address: "10.0.0.9", now: t0.addingTimeInterval(4.5)) }
        #expect(throws: APIError.self) { try throttle.check(name: "ANN", address: "10.0.0.9", now: t0.addingTimeInterval(4.5)) }
        try throttle.check(name: "ann", address: "10.0.0.9", now: t0.addingTimeInterval(5.1))
        throttle.failed(name: "ann", address: "10.0.0.9", now: t0.addingTimeInterval(5.1))
        #expect(throws: APIError.self) { try throttle.check(name: "ann", address: "10.0.0.9", now: t0.addingTimeInterval(6.5)) }
        try throttle.check(name: "ann", address: "10.0.0.9", now: t0.addingTimeInterval(7.2))
        // Another address is not slowed by these guesses; a success clears them.
        try throttle.check(name: "ann", address: "10.0.0.7", now: t0.addingTimeInterval(6.5))
        throttle.succeeded(name: "ann", address: "10.0.0.9")
        try throttle.check(name: "ann", address: "10.0.0.9", now: t0.addingTimeInterval(6.5))
        #expect(LoginThrottle.wait(afterFailures: 40) == LoginThrottle.longestWait)
    }
}

@Suite struct RouteAccessTests {
    @Test func decidedOnTheMatchedRoute() {
        #expect(RouteAccess(route: "/admin/keys/{id}", method: .delete) == .admin)
        #expect(RouteAccess(route: "/admin/models/{type}/{name}", method: .get) == .admin)
        #expect(RouteAccess(route: "/workers", method: .get) == .admin)
        #expect(RouteAccess(route: "/models", method: .get) == .user && RouteAccess(route: "/models/{name}", method: .get) == .user)
        #expect(RouteAccess(route: "/models", method: .post) == .admin && RouteAccess(route: "/models/{name}", method: .put) == .admin)
        #expect(RouteAccess(route: "/models/{name}", method: .delete) == .admin && RouteAccess(route: "/restart", method: .post) == .admin)
        #expect(RouteAccess(route: "/sdapi/v1/unload-checkpoint", method: .post) == .admin)
        #expect(RouteAccess(route: "/objects/**", method: .get) == .public)
        #expect(RouteAccess(route: "/objects/**", method: .put) == .user)
        #expect(RouteAccess(route: "/healthz", method: .post) == .user)
        #expect(RouteAccess(route: "/tasks/{id}/result", method: .get) == .user)
        #expect(RouteAccess(route: nil, method: .get) == .public)
        #expect(RouteAccess(route: nil, method: .post) == .user)
        // The passthrough catch-all: the web pages' files are public, and exactly those are never forwarded.
        #expect(RouteAccess(route: "/**", method: .get, path: "/web/js/app.js") == .public)
        #expect(RouteAccess(route: "/**", method: .get, path: "//web/js/app.js") == .public && RouteAccess.isWebAsset(path: "//web/js/app.js"))
        #expect(RouteAccess(route: "/**", method: .post, path: "/web/x") == .user)
        #expect(RouteAccess(route: "/**", method: .get, path: "/adetailer/v1/version") == .user)
        #expect(RouteAccess(route: "/**", method: .get, path: "/webx/y") == .user)
    }
}

@Suite struct ModelQueueTests {
    var planner = DispatchPlanner(
        inventory: GPUInventory(gpus: [], cpuSlots: 1, source: .configuration), maxInstances: 1, defaultPolicy: PoolPolicy()
    )
    let start = Date(timeIntervalSinceReferenceDate: 0)

    mutating func queue(_ id: String, _ user: String, priority: Int = 0, acrossUsers: Bool = false, at seconds: Double) {
        planner.enqueue(id, model: "A", user: user, priority: priority, crossUserPriority: acrossUsers, enqueuedAt: start + seconds)
    }

    @Test mutating func usersTakeTurnsAndPriorityOrdersTheirOwn() {
        for index in 0..<5 { queue("a\(index)", "alice", at: Double(index)) }
        queue("b0", "bob", at: 10)
        for index in 5..<25 { queue("a\(index)", "alice", priority: 100, at: 20 + Double(index)) }
        let order = planner.queuedIDs(model: "A")
        #expect(order.prefix(4) == ["a5", "b0", "a6", "a7"], "\(order)")
        var bob = planner.position(of: "b0")
        #expect(bob?.position == 2)
        // An admin's priority goes before every user's turn.
        queue("urgent", "ops", priority: 1, acrossUsers: true, at: 50)
        let urgent = planner.position(of: "urgent")
        bob = planner.position(of: "b0")
        #expect(urgent?.position == 1 && bob?.position == 3)
        // Removing tasks keeps the turns of the rest.
        let removed = planner.remove("a5") && planner.remove("urgent")
        #expect(removed)
        let rest = planner.queuedIDs(model: "A")
        #expect(rest.prefix(3) == ["a6", "b0", "a7"], "\(rest)")
        let removedBob = planner.remove("b0")
        let count = planner.queuedIDs(model: "A").count
        #expect(removedBob && count == 24)
    }
}

@Suite struct InputEdgeTests {
    @Test func rangeOffsetsPastIntAreClampedAsOtherServersDo() {
        #expect(ByteRange(header: "bytes=0-99999999999999999999999", size: 10) == .part(0...9))
        #expect(ByteRange(header: "bytes=-99999999999999999999999", size: 10) == .part(0...9))
        #expect(ByteRange(header: "bytes=99999999999999999999999-", size: 10) == .unsatisfiable)
        #expect(ByteRange(header: "bytes=2-3", size: 10) == .part(2...3))
    }

    @Test(arguments: ["evil\u{202E}fdp.safetensors", "a\u{200B}b.safetensors", "x\u{2066}y.ckpt", "z\u{FEFF}.pt"])
    func modelNamesRefuseInvisibleFormatting(name: String) {
        #expect(ModelType.problem(withName: name)?.contains("formatting") == true)
    }

    @Test func requestsTakeTheirTextsBytesInStorage() {
        let request: JSONValue = ["prompt": .string(String(repeating: "a", count: 1000)), "steps": 20]
        #expect((1000..<1100).contains(request.storageSize))
    }
}

@Suite struct StoredCallTests {
    func task(_ method: String, _ path: String) throws -> TaskRecord {
        TaskRecord(id: "t1", kind: .passthrough, model: "demo.safetensors", user: "u", request: try PassthroughRequest(method: method, path: path).json)
    }

    @Test func callsStoredBeforeTheAllowListAreJudgedAgain() throws {
        // Stored by an older sdbox, which forwarded these as written.
        for (method, path) in [("POST", "/sdapi/v1/%73erver-kill"), ("POST", "/sdapi/v1/options"), ("POST", "//sdapi/v1/unload-checkpoint"), ("GET", "/sdapi/v1/progress")] {
            #expect(throws: WorkerPathError.self, "\(method) \(path)") { try WorkerCall(task: try task(method, path)) }
        }
        #expect(try WorkerCall(task: try task("GET", "/sdapi/v1/cmd-flags?x=1")).path == "/sdapi/v1/cmd-flags?x=1")
        #expect(try WorkerCall(task: try task("POST", "/controlnet/detect")).path == "/controlnet/detect")
    }
}

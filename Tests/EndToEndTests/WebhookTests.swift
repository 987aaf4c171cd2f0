import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import SDBoxCore
import Testing

/// A local webhook receiver (a small Hummingbird app): records every POST; `/flaky` answers 500 to its
/// first call and 200 after, `/broken` always answers 503, `/switched` 503 while the receiver is `down`.
final class WebhookReceiver: Sendable {
    /// A request as received.
    struct Delivery: Sendable {
        let path: String
        let headers: HTTPFields
        let body: Data
    }

    actor Log {
        var deliveries: [Delivery] = []
        /// Whether `/switched` refuses.
        var down = false
        /// The deliveries `/switched` accepted.
        var accepted: [Delivery] = []
        func set(down: Bool) { self.down = down }
        /// Records a delivery; how many reached its path, and the status to answer.
        func record(_ delivery: Delivery) -> HTTPResponse.Status {
            deliveries.append(delivery)
            let calls = deliveries.filter { $0.path == delivery.path }.count
            switch delivery.path {
            case "/flaky": return calls == 1 ? .internalServerError : .ok
            case "/broken": return .serviceUnavailable
            case "/switched":
                if down { return .serviceUnavailable }
                accepted.append(delivery)
                return .ok
            default: return .ok
            }
        }
    }

    let port: Int
    let log = Log()
    let server: Task<Void, any Error>

    init() async throws {
        let log = self.log
        let router = Router()
        router.post("/:name") { request, context -> HTTPResponse.Status in
            let body = try await request.body.collect(upTo: 1 << 20)
            return await log.record(Delivery(path: request.uri.path, headers: request.headers, body: Data(body.readableBytesView)))
        }
        var logger = Logger(label: "webhook-receiver")
        logger.logLevel = .critical
        // Port 0: the kernel picks a port nobody holds, read back once the server listens (a port picked
        // beforehand could be taken by a concurrent test before the server binds it).
        let (listening, listened) = AsyncStream.makeStream(of: Int?.self)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in listened.yield(channel.localAddress?.port) }, logger: logger
        )
        server = Task {
            defer { listened.finish() }
            try await app.run()
        }
        var ports = listening.makeAsyncIterator()
        guard let bound = await ports.next(), let port = bound else {
            server.cancel()
            throw TestFailure("the webhook receiver could not listen")
        }
        self.port = port
    }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    /// Waits until `count` requests reached `path`, and answers them.
    func deliveries(to path: String, count: Int, timeout: Duration = .seconds(30)) async throws -> [Delivery] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let received = await log.deliveries.filter { $0.path == path }
            if received.count >= count { return received }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("\(path) received \(await log.deliveries.filter { $0.path == path }.count) webhooks, not \(count)")
    }

    deinit { server.cancel() }
}

/// The signature sdbox puts in `X-SDBox-Signature` for `body` under the secret of its data folder.
func expectedSignature(of body: Data, dataDirectory: String) throws -> String {
    let secret = try String(contentsOfFile: dataDirectory + "/webhook-secret", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
    return "sha256=" + Data(mac).hexString
}

/// Polls a task's result until `done` holds for it.
func waitForResult(_ server: ServerProcess, _ id: String, timeout: Duration = .seconds(30), until done: (JSONValue) -> Bool) async throws -> JSONValue {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let (_, result) = try await server.json(.GET, "/tasks/\(id)/result")
        if done(result) { return result }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestFailure("task \(id): \(try await server.json(.GET, "/tasks/\(id)/result").1)")
}

@Suite(.serialized, .timeLimit(.minutes(2))) struct WebhookTests {
    @Test func webhooksAreSignedRetriedAndRecorded() async throws {
        let receiver = try await WebhookReceiver()
        let server = try await ServerProcess(config: fastWorkers + "\nwebhooks: {retrySeconds: 1, maxAttempts: 2, allowPrivateNetworks: true}\n")
        defer { server.destroy() }
        let (_, submitted) = try await server.json(.POST, "/txt2img", [
            "prompt": "fox", "steps": 2, "width": 64, "height": 64, "callback_url": .string(receiver.url("/flaky")),
        ])
        let id = try #require(submitted["taskId"]?.stringValue)
        #expect(submitted["status"] == "succeeded")
        // The first attempt is answered 500, the second (a second later) 200.
        let deliveries = try await receiver.deliveries(to: "/flaky", count: 2)
        for (number, delivery) in deliveries.enumerated() {
            #expect(delivery.headers[HTTPField.Name("X-SDBox-Signature")!] == (try expectedSignature(of: delivery.body, dataDirectory: server.dataDirectory)))
            #expect(delivery.headers[HTTPField.Name("X-SDBox-Attempt")!] == "\(number + 1)")
            #expect(delivery.headers[.contentType] == "application/json")
            let payload = try JSONValue(parsing: delivery.body)
            #expect(payload["taskId"] == .string(id))
            #expect(payload["status"] == "succeeded")
            #expect(payload["ossUrl"]?.arrayValue?.first?.stringValue?.hasPrefix(server.baseURL + "/objects/images/default/\(id)_1.png?") == true)
            #expect(payload["webhook"] == nil)
        }
        let result = try await waitForResult(server, id) { $0["webhook"]?["state"] == "delivered" }
        let attempts = try #require(result["webhook"]?["attempts"]?.arrayValue)
        #expect(attempts.map { $0["status"] } == [500, 200])
        #expect(attempts.first?["error"]?.stringValue?.contains("500") == true)
        #expect(attempts.last?["error"] == .null)
        #expect(result["webhook"]?["url"] == .string(receiver.url("/flaky")))
        // The worker never saw the callback.
        #expect(try await server.json(.GET, "/tasks/\(id)").1["request"]?["callback_url"] == nil)

        // A receiver that never accepts: given up after maxAttempts.
        let (_, hopeless) = try await server.json(.POST, "/txt2img", ["prompt": "fox", "steps": 1, "width": 64, "height": 64], headers: [
            ("X-Callback-URL", receiver.url("/broken")), ("Request-Type", "async"),
        ])
        let given = try await waitForResult(server, try #require(hopeless["taskId"]?.stringValue)) { $0["webhook"]?["state"] == "failed" }
        #expect(given["webhook"]?["attempts"]?.arrayValue?.map { $0["status"] } == [503, 503])

        // A passthrough call with a webhook is a task; its webhook carries the worker's answer.
        let detect: JSONValue = ["controlnet_input_images": [.string(try swatch((9, 9, 9)))]]
        let answer = try await server.response(.POST, "/controlnet/detect", body: try detect.encoded(), headers: [("X-Callback-URL", receiver.url("/passthrough"))])
        #expect(answer.status == 200)
        let taskID = try #require(answer.headers.first(name: "Task-Id"))
        let delivered = try await receiver.deliveries(to: "/passthrough", count: 1)
        let payload = try JSONValue(parsing: try #require(delivered.first).body)
        #expect(payload["taskId"] == .string(taskID))
        #expect(payload["response"]?["images"] == [.string("images/default/\(taskID)_1.png")])

        // Only http(s) callbacks.
        for url in ["ftp://127.0.0.1/x", "not a url", "file:///etc/passwd"] {
            let (status, error) = try await server.json(.POST, "/txt2img", ["prompt": "x", "steps": 1, "callback_url": .string(url)])
            #expect(status == 400)
            #expect(error["field"] == "callback_url")
        }
        #expect(try await server.json(.POST, "/controlnet/detect", ["controlnet_input_images": []], headers: [("X-Callback-URL", "gopher://x")]).0 == 400)
    }

    @Test func pendingWebhooksSurviveARestart() async throws {
        let receiver = try await WebhookReceiver()
        let server = try await ServerProcess(config: fastWorkers + "\nwebhooks: {retrySeconds: 3, allowPrivateNetworks: true}\n")
        defer { server.destroy() }
        let (_, submitted) = try await server.json(.POST, "/txt2img", [
            "prompt": "fox", "steps": 2, "width": 64, "height": 64, "callback_url": .string(receiver.url("/flaky")),
        ], headers: [("Request-Type", "async")])
        let id = try #require(submitted["taskId"]?.stringValue)
        _ = try await waitForResult(server, id) { $0["webhook"]?["attempts"]?.arrayValue?.count == 1 }
        // sdbox stops before the retry is due; the next sdbox makes it.
        await server.stop()
        try await server.start()
        let result = try await waitForResult(server, id) { $0["webhook"]?["state"] == "delivered" }
        #expect(result["webhook"]?["attempts"]?.arrayValue?.map { $0["status"] } == [500, 200])
        #expect(try await receiver.deliveries(to: "/flaky", count: 2).count == 2)
    }

    /// Users cannot make sdbox POST into the box or its private network: refused at submission, and again
    /// before each attempt (here: a webhook accepted while private targets were allowed, resumed after a
    /// restart with them forbidden).
    @Test func webhooksStayOutOfPrivateNetworks() async throws {
        let receiver = try await WebhookReceiver()
        let server = try await ServerProcess(config: fastWorkers + "\nwebhooks: {retrySeconds: 30, allowPrivateNetworks: true}\n")
        defer { server.destroy() }
        let (_, submitted) = try await server.json(.POST, "/txt2img", [
            "prompt": "fox", "steps": 2, "width": 64, "height": 64, "callback_url": .string(receiver.url("/broken")),
        ], headers: [("Request-Type", "async")])
        let id = try #require(submitted["taskId"]?.stringValue)
        _ = try await waitForResult(server, id) { $0["webhook"]?["attempts"]?.arrayValue?.count == 1 }
        await server.stop()
        try (fastWorkers + "\nwebhooks: {retrySeconds: 1}\n").write(toFile: server.configPath, atomically: true, encoding: .utf8)
        try await server.start()

        for (url, kind) in [
            ("http://127.0.0.1:9/x", "loopback"), ("http://localhost:9/x", "loopback"), ("http://[::1]/x", "loopback"),
            ("http://10.0.0.7/x", "private"), ("http://169.254.169.254/latest/meta-data", "link-local"), ("http://0.0.0.0:80/", "unspecified"),
        ] {
            let (status, error) = try await server.json(.POST, "/txt2img", ["prompt": "x", "steps": 1, "callback_url": .string(url)])
            #expect(status == 400 && error["field"] == "callback_url", "\(url): \(error)")
            #expect(error["detail"]?.stringValue?.contains(kind) == true, "\(url): \(error)")
        }
        let result = try await waitForResult(server, id) { $0["webhook"]?["state"] == "failed" }
        let attempts = result["webhook"]?["attempts"]?.arrayValue ?? []
        #expect(attempts.count == 2)
        #expect(attempts.last?["error"]?.stringValue?.hasPrefix("not sent: 127.0.0.1 is a loopback address") == true, "\(attempts)")
        #expect(await receiver.log.deliveries.count == 1)
    }
}

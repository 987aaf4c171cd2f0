import AsyncHTTPClient
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import NIOHTTP1
import SDBoxCore
import Testing

/// Workers slow enough to watch step by step (a second per step at 64x64: the rest of the suite, at its
/// busiest, has starved the server or the test for 3 s, the whole of a task at half a second a step),
/// streams that look every 20 ms.
let watchedWorkers = """
    scheduler:
      maxInstances: 1
    events:
      intervalMilliseconds: 20
    workers:
      reference:
        stepMilliseconds: 1000
        minimumStepMilliseconds: 1000
    """

/// Reads a Server-Sent Events stream until it ends: each event's name and JSON data.
func readEvents(_ url: String) async throws -> [(name: String, data: JSONValue)] {
    let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(60))
    #expect(response.headers.first(name: "Content-Type") == "text/event-stream")
    var text = ""
    var events: [(String, JSONValue)] = []
    for try await chunk in response.body {
        text += String(buffer: chunk)
        while let end = text.range(of: "\n\n") {
            let block = text[..<end.lowerBound]
            text = String(text[end.upperBound...])
            var name = ""
            var data = ""
            for line in block.split(separator: "\n") {
                if line.hasPrefix("event: ") { name = String(line.dropFirst(7)) }
                if line.hasPrefix("data: ") { data += line.dropFirst(6) }
            }
            if !name.isEmpty { events.append((name, try JSONValue(parsing: Data(data.utf8)))) }
        }
    }
    return events
}

/// Checks that a task's events tell its life step by step: queued (when `queued`), started, sampling
/// steps in order, previews, and its result last.
func expectLifeStepByStep(_ events: [(name: String, data: JSONValue)], steps: Int, queued: Bool, sourceLocation: SourceLocation = #_sourceLocation) {
    let names = events.map(\.name)
    if queued {
        #expect(names.first == "queued", "\(names)", sourceLocation: sourceLocation)
        // Its place in the queue only improves, to next (1) before it starts.
        let positions = events.filter { $0.name == "queued" }.compactMap { $0.data["position"]?.integerValue }
        #expect(positions == positions.sorted(by: >) && positions.last == 1, "\(positions)", sourceLocation: sourceLocation)
    }
    #expect(names.filter { $0 == "started" }.count == 1, "\(names)", sourceLocation: sourceLocation)
    let seen = events.filter { $0.name == "progress" }.compactMap { $0.data["step"]?.integerValue }
    // Each step lasts some 50 looks, so on a quiet machine every step is seen; a machine loaded by the rest
    // of the suite can starve the server for seconds, so what is checked is that the steps come in order,
    // each once, and that the stream saw the task sample.
    #expect(!seen.isEmpty && seen == seen.sorted() && Set(seen).count == seen.count && seen.allSatisfy { (0...Int64(steps)).contains($0) }, "\(seen)", sourceLocation: sourceLocation)
    #expect(events.contains { $0.name == "preview" && ($0.data["image"]?.stringValue?.hasPrefix("iVBORw0KGgo") ?? false) }, sourceLocation: sourceLocation)
    #expect(names.last == "finished", "\(names)", sourceLocation: sourceLocation)
    #expect(events.last?.data["images"]?.arrayValue?.count == 1, sourceLocation: sourceLocation)
    #expect(events.last?.data["ossUrl"]?.arrayValue?.count == 1, sourceLocation: sourceLocation)
}

@Suite(.serialized, .timeLimit(.minutes(2))) struct EventStreamTests {
    @Test func serverSentEventsFollowATaskStepByStep() async throws {
        let server = try await ServerProcess(config: watchedWorkers)
        defer { server.destroy() }
        let body: JSONValue = ["prompt": "fox", "steps": 6, "width": 64, "height": 64]
        // The first task holds the only worker, so the second one waits in the queue.
        // Its stream opens at once, while its worker starts: on a loaded machine a stream opened later could
        // find it finished.
        let first = try #require(try await server.json(.POST, "/txt2img", body, headers: [("Request-Type", "async")]).1["taskId"]?.stringValue)
        async let firstEvents = readEvents(server.baseURL + "/tasks/\(first)/events")
        let second = try #require(try await server.json(.POST, "/txt2img", body, headers: [("Request-Type", "async")]).1["taskId"]?.stringValue)
        let secondEvents = try await readEvents(server.baseURL + "/tasks/\(second)/events")
        expectLifeStepByStep(secondEvents, steps: 6, queued: true)
        expectLifeStepByStep(try await firstEvents, steps: 6, queued: false)
        // A finished task's stream is its result alone.
        let again = try await readEvents(server.baseURL + "/tasks/\(second)/events")
        #expect(again.map(\.name) == ["finished"])
        #expect(try await server.json(.GET, "/tasks/nosuchtask/events").0 == 404)
    }

    @Test func aWebSocketFollowsManyTasks() async throws {
        let server = try await ServerProcess(config: watchedWorkers)
        defer { server.destroy() }
        let body: JSONValue = ["prompt": "fox", "steps": 5, "width": 64, "height": 64]
        var submitted: [String] = []
        for _ in 0..<2 {
            submitted.append(try #require(try await server.json(.POST, "/txt2img", body, headers: [("Request-Type", "async")]).1["taskId"]?.stringValue))
        }
        let ids = submitted
        let received = EventLog()
        try await WebSocketClient.connect(url: "ws://127.0.0.1:\(server.port)/ws", logger: Logger(label: "test")) { inbound, outbound, _ in
            let subscribe: JSONValue = ["subscribe": .array((ids + ["nosuchtask"]).map { .string($0) })]
            try await outbound.write(.text(String(decoding: try subscribe.encoded(), as: UTF8.self)))
            var finished = 0
            for try await message in inbound.messages(maxSize: 1 << 20) {
                guard case .text(let text) = message else { continue }
                let event = try JSONValue(parsing: Data(text.utf8))
                await received.append(event)
                if ["finished", "failed", "cancelled"].contains(event["event"]?.stringValue ?? "") { finished += 1 }
                if finished == ids.count { break }
            }
        }
        let events = await received.events
        #expect(events.contains { $0["event"] == "error" && $0["taskId"] == "nosuchtask" })
        for (index, id) in ids.enumerated() {
            let own = events.filter { $0["taskId"]?.stringValue == id }.map { (name: $0["event"]?.stringValue ?? "", data: $0) }
            expectLifeStepByStep(own, steps: 5, queued: index == 1)
        }
    }
}

/// Events gathered by a WebSocket handler.
actor EventLog {
    var events: [JSONValue] = []
    func append(_ event: JSONValue) { events.append(event) }
}

import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import SDBoxCore

/// Live progress: `GET /tasks/{id}/events` as Server-Sent Events, and a WebSocket at `/ws` for many tasks
/// at once. Both send the same JSON events (see ``TaskEventHub``): `queued` (`position`, `etaRelative`),
/// `started` (`attempt`), `progress` (`step`, `steps`, `jobNo`, `jobCount`, `progress`, `etaRelative`),
/// `preview` (`image`, base64, when the worker reports one), then one of `finished`, `failed` or
/// `cancelled` with the task's result as `GET /tasks/{id}/result` shows it.
///
/// On the WebSocket, the client sends `{"subscribe": [ids]}` and `{"unsubscribe": [ids]}`; every event
/// carries its `taskId`.
struct EventRoutes {
    let services: Services
    let hub: TaskEventHub

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/tasks/:id/events") { request, context in
            let task = try await services.task(try context.parameters.require("id"), for: context.caller)
            let events = await hub.subscribe(task.id)
            let base = services.urlBase(for: request)
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache", Self.accelBuffering: "no"],
                body: ResponseBody { writer in
                    for await event in events {
                        let text: String
                        if let json = render(event, taskID: task.id, base: base), let name = json["event"]?.stringValue {
                            text = "event: \(name)\ndata: \(String(decoding: try json.encoded(), as: UTF8.self))\n\n"
                        } else {
                            text = ": keep-alive\n\n"
                        }
                        try await writer.write(ByteBuffer(string: text))
                    }
                    try await writer.finish(nil)
                }
            )
        }
        router.ws("/ws") { inbound, outbound, context in
            let caller = context.requestContext.caller
            let base = services.urlBase(for: context.request)
            let (messages, sink) = AsyncStream.makeStream(of: JSONValue.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await message in messages {
                        try await outbound.write(.text(String(decoding: try message.encoded(), as: UTF8.self)))
                    }
                }
                var subscriptions: [String: Task<Void, Never>] = [:]
                defer { subscriptions.values.forEach { $0.cancel() } }
                for try await message in inbound.messages(maxSize: 1 << 16) {
                    guard case .text(let text) = message, let command = try? JSONValue(parsing: Data(text.utf8)),
                        command["subscribe"] != nil || command["unsubscribe"] != nil
                    else {
                        sink.yield(["event": "error", "error": "expected {\"subscribe\": [task ids]} or {\"unsubscribe\": [task ids]}"])
                        continue
                    }
                    for id in (command["unsubscribe"]?.arrayValue ?? []).compactMap(\.stringValue) {
                        subscriptions.removeValue(forKey: id)?.cancel()
                    }
                    for id in (command["subscribe"]?.arrayValue ?? []).compactMap(\.stringValue) where subscriptions[id] == nil {
                        guard (try? await services.task(id, for: caller)) != nil else {
                            sink.yield(["event": "error", "taskId": .string(id), "error": "task not found"])
                            continue
                        }
                        let events = await hub.subscribe(id)
                        subscriptions[id] = Task {
                            for await event in events {
                                if let json = render(event, taskID: id, base: base) { sink.yield(json) }
                            }
                        }
                    }
                }
                sink.finish()
                try await group.waitForAll()
            }
        }
    }

    /// An event as JSON; nil for a heartbeat (which SSE sends as a comment and WebSocket pings cover).
    func render(_ event: TaskEvent, taskID: String, base: String) -> JSONValue? {
        let fields: [String: JSONValue]
        switch event {
        case .queued(let position, let eta):
            fields = ["event": "queued", "position": .integer(Int64(position)), "etaRelative": eta.map { .number($0) } ?? .null]
        case .started(let attempt):
            fields = ["event": "started", "attempt": .integer(Int64(attempt))]
        case .progress(let step, let steps, let job, let jobs, let fraction, let eta):
            fields = [
                "event": "progress", "step": .integer(Int64(step)), "steps": .integer(Int64(steps)), "jobNo": .integer(Int64(job)),
                "jobCount": .integer(Int64(jobs)), "progress": .number(fraction), "etaRelative": .number(eta),
            ]
        case .preview(let image):
            fields = ["event": "preview", "image": .string(image)]
        case .heartbeat:
            return nil
        case .final(let task):
            var result = services.resultBody(of: task, base: base, webhook: false)
            result["event"] = .string(task.state == .succeeded ? "finished" : task.state.rawValue)
            fields = result
        }
        return .object(fields.merging(["taskId": .string(taskID)]) { own, _ in own })
    }

    static let accelBuffering = HTTPField.Name("X-Accel-Buffering")!
}

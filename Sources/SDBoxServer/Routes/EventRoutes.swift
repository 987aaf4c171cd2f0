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
                        if let answer = render(event, taskID: task.id, base: base) {
                            text = "event: \(answer.name)\ndata: \(String(decoding: try Response.jsonBytes(answer), as: UTF8.self))\n\n"
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
            let (messages, sink) = AsyncStream.makeStream(of: TaskEventAnswer.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await message in messages {
                        try await outbound.write(.text(String(decoding: try Response.jsonBytes(message), as: UTF8.self)))
                    }
                }
                var subscriptions: [String: Task<Void, Never>] = [:]
                defer { subscriptions.values.forEach { $0.cancel() } }
                for try await message in inbound.messages(maxSize: 1 << 16) {
                    guard case .text(let text) = message, let command = try? JSONValue(parsing: Data(text.utf8)),
                        command["subscribe"] != nil || command["unsubscribe"] != nil
                    else {
                        sink.yield(.error(taskId: nil, message: "expected {\"subscribe\": [task ids]} or {\"unsubscribe\": [task ids]}"))
                        continue
                    }
                    for id in (command["unsubscribe"]?.arrayValue ?? []).compactMap(\.stringValue) {
                        subscriptions.removeValue(forKey: id)?.cancel()
                    }
                    for id in (command["subscribe"]?.arrayValue ?? []).compactMap(\.stringValue) where subscriptions[id] == nil {
                        guard (try? await services.task(id, for: caller)) != nil else {
                            sink.yield(.error(taskId: id, message: "task not found"))
                            continue
                        }
                        let events = await hub.subscribe(id)
                        subscriptions[id] = Task {
                            for await event in events {
                                if let answer = render(event, taskID: id, base: base) { sink.yield(answer) }
                            }
                        }
                    }
                }
                sink.finish()
                try await group.waitForAll()
            }
        }
    }

    /// An event as sent; nil for a heartbeat.
    func render(_ event: TaskEvent, taskID: String, base: String) -> TaskEventAnswer? {
        TaskEventAnswer(event, taskId: taskID) { services.resultAnswer(of: $0, base: base, webhook: false) }
    }

    static let accelBuffering = HTTPField.Name("X-Accel-Buffering")!
}

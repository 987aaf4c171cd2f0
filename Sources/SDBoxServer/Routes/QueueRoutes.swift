import Appliance
import Foundation
import Hummingbird
import SDBoxCore
import Scheduler
import Storage

/// Holding the queue for admins: `GET /admin/queue`, `POST /admin/queue/pause` and `/resume` (the whole
/// box, or one pool with `{"model": ...}`), and `POST /admin/tasks/{id}/front` (a queued task runs next).
struct QueueRoutes {
    let services: Services

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/admin/queue") { _, _ in try await state() }
        router.post("/admin/queue/pause") { request, context in
            try await services.scheduler.pause(model: try await model(in: request, user: context.user))
            return try await state()
        }
        router.post("/admin/queue/resume") { request, context in
            try await services.scheduler.resume(model: try await model(in: request, user: context.user))
            return try await state()
        }
        router.post("/admin/tasks/:id/front") { _, context in
            let id = try context.parameters.require("id")
            guard TaskID.isWellFormed(id), let task = try await services.tasks.get(id) else {
                throw APIError(.notFound, "task not found", detail: "task not exist: no task with id '\(id)'")
            }
            guard try await services.scheduler.moveToFront(task.id) != nil else {
                throw APIError(.conflict, "task not queued", detail: "task \(id) is \(task.state.rawValue), not queued")
            }
            var answer: [String: JSONValue] = ["taskId": .string(id)]
            if case .queued(let position, _) = await services.scheduler.progress(of: id) { answer["queuePosition"] = .integer(Int64(position)) }
            return try Response.json(answer)
        }
    }

    /// The pool a pause or resume names (`{"model": ...}`, resolved as a task's model is), or nil for the
    /// whole box (an empty body).
    func model(in request: Request, user: String) async throws -> String? {
        let body = try await request.collectBody(limit: 1 << 16)
        guard body.readableBytes > 0 else { return nil }
        guard let object = (try? JSONValue(parsing: Data(body.readableBytesView)))?.objectValue else {
            throw APIError(.badRequest, "invalid request", detail: "the body must be a JSON object, {\"model\": ...}, or empty for the whole box")
        }
        guard let value = object["model"], !value.isNull else { return nil }
        guard let name = value.stringValue else {
            throw APIError(.badRequest, "invalid request", detail: "field 'model' must be a model name", extra: ["field": "model"])
        }
        return try await services.model(named: name, for: user).name
    }

    /// What is paused, and how many tasks wait in each queue.
    func state() async throws -> Response {
        let pause = await services.scheduler.queuePause()
        return try Response.json(QueueState(paused: pause.all, pausedModels: pause.models.sorted(), queues: await services.scheduler.queueDepths()))
    }

    struct QueueState: Encodable {
        let paused: Bool
        let pausedModels: [String]
        let queues: [String: Int]
    }
}

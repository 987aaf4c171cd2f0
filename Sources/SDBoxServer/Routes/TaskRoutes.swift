import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ObjectStore
import SDBoxCore
import Scheduler
import Storage

/// The task API of the original serverless edition: `/txt2img`, `/img2img`, `/tasks/{id}/...`, with
/// `Request-Type: sync|async`.
struct TaskRoutes {
    let services: Services

    func register(on router: Router<SDBoxRequestContext>) {
        for kind in TaskKind.generations {
            router.post(RouterPath("/\(kind.rawValue)")) { request, context in
                var body = try await request.jsonBody(limit: services.configuration.http.maxBodyBytes)
                let callback = try services.callback(taking: &body, request: request)
                let task = try await services.submitGeneration(kind: kind, body: body, caller: context.caller, userOptions: false, callback: callback)
                return try await answer(task, request: request)
            }
        }
        router.post("/extra_images") { request, context in
            var body = try await request.jsonBody(limit: services.configuration.http.maxBodyBytes)
            let callback = try services.callback(taking: &body, request: request)
            let task = try await services.submitPostprocessing(kind: .extraSingleImage, body: body, caller: context.caller, callback: callback)
            return try await answer(task, request: request)
        }
        router.get("/tasks") { request, context in
            let query = request.uri.queryParameters
            let limit = min(max(query.get("limit", as: Int.self) ?? 50, 1), 500)
            // Admins see every user's tasks (or one user's with ?user=); users their own.
            let user = context.isAdmin ? query.get("user") : context.user
            let page = try await services.tasks.recent(limit: limit, user: user, filter: try TaskListQuery.filter(query))
            var body: [String: JSONValue] = ["tasks": .array(page.tasks.map(summary))]
            if let next = page.next { body["next"] = .string(next) }
            return Response.json(.object(body))
        }
        router.get("/tasks/:id") { _, context in
            let task = try await services.task(try context.parameters.require("id"), for: context.caller)
            var body = summary(task)
            body["request"] = task.request
            return Response.json(body)
        }
        router.get("/tasks/:id/result") { request, context in
            let task = try await services.task(try context.parameters.require("id"), for: context.caller)
            return Response.json(.object(services.resultBody(of: task, base: services.urlBase(for: request))))
        }
        router.get("/tasks/:id/thumbnails") { request, context in
            let task = try await services.task(try context.parameters.require("id"), for: context.caller)
            var keys: [String] = []
            for image in task.result?.images ?? [] {
                do {
                    keys.append(try await services.thumbnails.thumbnail(for: image))
                } catch ObjectStoreError.notFound {
                    throw APIError(.notFound, "image not found", detail: "image '\(image)' of task \(task.id) is no longer stored")
                }
            }
            return Response.json([
                "taskId": .string(task.id), "status": .string(task.state.rawValue),
                "thumbnails": .array(services.signedURLs(for: keys, request: request).map { .string($0) }),
            ])
        }
        router.get("/tasks/:id/progress") { request, context in
            let task = try await services.task(try context.parameters.require("id"), for: context.caller)
            var body = try await progress(of: task)
            if request.skipsCurrentImage { body["currentImage"] = "" }
            return Response.json(.object(body))
        }
        router.post("/tasks/:id/cancellation") { _, context in
            let id = try context.parameters.require("id")
            _ = try await services.task(id, for: context.caller)
            guard var task = try await services.scheduler.cancel(id) else { throw APIError.taskNotFound(id) }
            if task.state == .running {
                // The worker was interrupted; it lets go within a step.
                task = await services.scheduler.runner.waitUntilFinal(id, timeout: .seconds(30)) ?? task
            }
            return try Response.taskAnswer(task)
        }
    }

    /// The answer to a submitted task: its id at once with `Request-Type: async`, else its outcome when final.
    func answer(_ task: TaskRecord, request: Request) async throws -> Response {
        if request.headers[.requestType]?.lowercased() == "async" {
            return try Response.taskAnswer(task)
        }
        guard let final = await services.scheduler.runner.waitUntilFinal(task.id) else { throw APIError.taskNotFound(task.id) }
        var answer: [String: JSONValue] = [
            "taskId": .string(final.id), "status": .string(final.state.rawValue),
            "ossUrl": .array(services.signedURLs(for: final.result?.images ?? [], request: request).map { .string($0) }),
        ]
        if final.state == .failed { throw APIError.taskDidNotSucceed(final, extra: answer) }
        if let error = final.error { answer["error"] = .string(error) }
        return Response.json(.object(answer))
    }

    /// `GET /tasks/{id}/progress`: A1111's progress with the original's camel-case keys.
    func progress(of task: TaskRecord) async throws -> [String: JSONValue] {
        var progress = A1111.Progress.idle
        var position: Int?
        // A finished task is not in the scheduler: no need to ask it.
        switch task.state.isFinal ? .notActive : await services.scheduler.progress(of: task.id) {
        case .queued(let place, let eta):
            position = place
            progress.state.job = "queued"
            progress.eta_relative = eta ?? 0
        case .running(let report):
            progress = report ?? progress
        case .notActive:
            if task.state == .succeeded {
                progress.progress = 1
            }
        }
        var body: [String: JSONValue] = [
            "taskId": .string(task.id), "status": .string(task.state.rawValue),
            "progress": .number(task.state == .succeeded ? 1 : progress.progress),
            "etaRelative": .number(progress.eta_relative),
            "currentImage": progress.current_image.map { .string($0) } ?? .string(""),
            "state": try JSONValue(encoding: progress.state),
        ]
        if let position { body["queuePosition"] = .integer(Int64(position)) }
        return body
    }

    func summary(_ task: TaskRecord) -> JSONValue {
        [
            "taskId": .string(task.id), "kind": .string(task.kind.rawValue), "model": .string(task.model), "user": .string(task.user),
            "status": .string(task.state.rawValue), "attempts": .integer(Int64(task.attempts)),
            "createdAt": .string(task.createdAt.ISO8601Format()), "error": task.error.map { .string($0) } ?? .null,
            "startedAt": task.startedAt.map { .number($0.timeIntervalSince1970) } ?? .null,
            "finishedAt": task.finishedAt.map { .number($0.timeIntervalSince1970) } ?? .null,
            "priority": .integer(Int64(task.priority)),
        ]
    }
}

extension Request {
    /// Whether the caller asked for progress without the live preview (`?skip_current_image=true`, as A1111).
    var skipsCurrentImage: Bool {
        uri.queryParameters["skip_current_image"].map { $0.lowercased() == "true" } ?? false
    }
}

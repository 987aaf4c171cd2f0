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

/// The task API of the original serverless edition: `/txt2img`, `/img2img`, `/extra_images`,
/// `/tasks/{id}/...` and the caller's options (`POST /options {"data": {...}}`), with
/// `Request-Type: sync|async` and the `taskId` header.
struct TaskRoutes {
    let services: Services
    let finalAnswers = FinalAnswerCache()

    func register(on router: Router<SDBoxRequestContext>) {
        for kind in TaskKind.generations {
            router.post(RouterPath("/\(kind.rawValue)")) { request, context in
                var body = try await request.jsonBody(limit: services.configuration.http.maxBodyBytes)
                let submission = try services.submission(taking: &body, request: request, context: context)
                let task = try await services.submitGeneration(kind: kind, body: body, submission: submission)
                return try await answer(task, request: request)
            }
        }
        router.post("/extra_images") { request, context in
            var body = try await request.jsonBody(limit: services.configuration.http.maxBodyBytes)
            let submission = try services.submission(taking: &body, request: request, context: context)
            let task = try await services.submitPostprocessing(kind: .extraSingleImage, body: body, submission: submission)
            return try await answer(task, request: request)
        }
        router.post("/options") { request, context in
            let body = try await request.jsonObject(limit: services.configuration.http.maxBodyBytes)
            guard let data = body["data"]?.objectValue else {
                throw APIError(.badRequest, "invalid request", detail: "the body must be {\"data\": {option: value, ...}}", extra: ["field": "data"])
            }
            try await services.updateOptions(data, for: context.user)
            return try Response.json(["message": "success"])
        }
        router.get("/tasks") { request, context in
            let query = request.uri.queryParameters
            let limit = min(max(query.get("limit", as: Int.self) ?? 50, 1), 500)
            // Admins see every user's tasks (or one user's with ?user=); users their own.
            let user = context.isAdmin ? query.get("user") : context.user
            let page = try await services.tasks.recent(limit: limit, user: user, filter: try TaskListQuery.filter(query))
            return try Response.json(TaskPage(tasks: page.tasks.map { TaskSummary($0) }, next: page.next))
        }
        router.get("/tasks/:id") { _, context in
            let task = try await services.task(try context.parameters.require("id"), for: context.caller)
            return try Response.json(TaskSummary(task, withRequest: true))
        }
        router.get("/tasks/:id/result") { request, context in
            let task = try await services.task(try context.parameters.require("id"), for: context.caller)
            let base = services.urlBase(for: request)
            guard task.state.isFinal else { return try Response.json(services.resultAnswer(of: task, base: base)) }
            let webhook = task.callback.map { "\($0.state.rawValue)/\($0.attempts.count)" } ?? ""
            let key = FinalAnswerCache.Key(route: "result", taskID: task.id, variant: "\(base) \(services.urlExpiry()) \(webhook)")
            return Response.encodedJSON(try await finalAnswers.answer(key) { try Response.jsonBytes(services.resultAnswer(of: task, base: base)) })
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
            return try Response.json(TaskThumbnails(taskId: task.id, status: task.state.apiName, thumbnails: services.signedURLs(for: keys, request: request)))
        }
        router.get("/tasks/:id/progress") { request, context in
            let task = try await services.task(try context.parameters.require("id"), for: context.caller)
            if task.state.isFinal {
                // A final task's progress never changes (and has no live preview).
                return Response.encodedJSON(try await finalAnswers.answer(.init(route: "progress", taskID: task.id, variant: "")) {
                    try Response.jsonBytes(await progress(of: task))
                })
            }
            var answer = await progress(of: task)
            if request.skipsCurrentImage { answer.currentImage = "" }
            return try Response.json(answer)
        }
        router.post("/tasks/:id/cancellation") { _, context in
            let id = try context.parameters.require("id")
            _ = try await services.task(id, for: context.caller)
            guard var task = try await services.scheduler.cancel(id) else { throw APIError.taskNotFound(id) }
            if task.state == .running {
                // The worker was interrupted; it lets go within a step.
                task = await services.scheduler.runner.waitUntilFinal(id, timeout: .seconds(30)) ?? task
            }
            return try Response.json(TaskAnswer(task, message: "success"))
        }
    }

    /// The answer to a submitted task: its id at once with `Request-Type: async`, else its outcome when
    /// final with the signed URLs of its images.
    func answer(_ task: TaskRecord, request: Request) async throws -> Response {
        try await services.answer(task, request: request) { final in
            try Response.json(TaskAnswer(final, ossUrl: services.signedURLs(for: final.result?.images ?? [], request: request)))
        }
    }

    /// `GET /tasks/{id}/progress`: A1111's progress with the original's camel-case keys.
    func progress(of task: TaskRecord) async -> TaskProgressAnswer {
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
        return TaskProgressAnswer(
            taskId: task.id, status: task.state.apiName, progress: task.state == .succeeded ? 1 : progress.progress,
            etaRelative: progress.eta_relative, currentImage: progress.current_image ?? "", state: progress.state, queuePosition: position
        )
    }
}

extension Request {
    /// Whether the caller asked for progress without the live preview (`?skip_current_image=true`, as A1111).
    var skipsCurrentImage: Bool {
        uri.queryParameters["skip_current_image"].map { $0.lowercased() == "true" } ?? false
    }
}

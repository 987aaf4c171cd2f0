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

/// The A1111-compatible API under `/sdapi/v1`: the same paths, bodies and answers as AUTOMATIC1111's
/// web UI, so its clients work unchanged. Requests that name no checkpoint use the caller's default
/// (`sd_model_checkpoint` in `POST /sdapi/v1/options`).
struct A1111Routes {
    let services: Services

    func register(on router: Router<SDBoxRequestContext>) {
        let api = router.group("/sdapi/v1")
        for kind in TaskKind.generations {
            api.post(RouterPath(kind.rawValue)) { request, context in
                try await generate(kind: kind, request: request, context: context)
            }
        }
        for kind in [TaskKind.extraSingleImage, .extraBatchImages] {
            api.post(RouterPath(kind.rawValue)) { request, context in
                try await postprocess(kind: kind, request: request, context: context)
            }
        }
        api.get("progress") { request, context in
            var progress = try await currentProgress(user: context.user)
            if request.skipsCurrentImage { progress.current_image = nil }
            return try Response.json(encoding: progress)
        }
        api.post("interrupt") { _, context in
            for task in try await runningTasks(of: context.user) { _ = try await services.scheduler.cancel(task.id) }
            return Response.json([:])
        }
        api.post("skip") { _, _ in Response.json([:]) }
        api.get("sd-models") { _, _ in
            let models = try await services.models.refresh().filter { $0.type == .stableDiffusion }
            return try Response.json(encoding: models.map { $0.checkpoint.map(A1111.SDModel.init(checkpoint:)) ?? A1111.SDModel(path: $0.ossPath) })
        }
        api.get("sd-vae") { _, _ in
            let vaes = try await services.models.refresh().filter { $0.type == .sdVae }
            return Response.json(.array(vaes.map { ["model_name": .string($0.name), "filename": .string($0.ossPath)] }))
        }
        api.get("loras") { _, _ in
            let loras = try await services.models.refresh().filter { $0.type == .lora }
            return Response.json(.array(loras.map { lora in
                let name = JSONValue.string((lora.name as NSString).deletingPathExtension)
                return ["name": name, "alias": name, "path": .string(lora.ossPath), "metadata": [:]]
            }))
        }
        api.get("embeddings") { _, _ in
            let embeddings = try await services.models.refresh().filter { $0.type == .embedding }
            var loaded: [String: JSONValue] = [:]
            for embedding in embeddings {
                loaded[(embedding.name as NSString).deletingPathExtension] = [
                    "step": .null, "sd_checkpoint": .null, "sd_checkpoint_name": .null, "shape": .null, "vectors": .null,
                ]
            }
            return Response.json(["loaded": .object(loaded), "skipped": [:]])
        }
        api.get("samplers") { _, _ in try Response.json(encoding: A1111.samplers) }
        api.get("schedulers") { _, _ in try Response.json(encoding: A1111.schedulers) }
        api.get("upscalers") { _, _ in
            let registered = try await services.models.refresh().filter { $0.type == .upscaler }.map { model in
                A1111.Upscaler(
                    name: (model.name as NSString).deletingPathExtension, model_name: "ESRGAN_4x", model_path: model.ossPath,
                    model_url: nil, scale: 4
                )
            }
            return try Response.json(encoding: A1111.upscalers + registered)
        }
        api.get("scripts") { _, _ in Response.json(["txt2img": [], "img2img": []]) }
        api.get("options") { _, context in Response.json(.object(try await options(for: context.user))) }
        api.post("options") { request, context in
            var changes = try await request.jsonObject(limit: services.configuration.http.maxBodyBytes)
            if let checkpoint = changes["sd_model_checkpoint"] {
                guard let name = checkpoint.stringValue else {
                    throw APIError(.badRequest, "invalid request", detail: "field 'sd_model_checkpoint' must be a string", extra: ["field": "sd_model_checkpoint"])
                }
                changes["sd_model_checkpoint"] = .string(try await services.resolveModel(name).name)
            }
            changes["sd_checkpoint_hash"] = nil
            _ = try await services.catalog.updateOptions(forUser: context.user, changes)
            return Response.json(nil)
        }
    }

    /// Runs a generation synchronously and answers as A1111: base64 PNGs, parameters, `info` as a JSON string.
    /// An interrupted generation answers with the images made so far, as A1111 does.
    func generate(kind: TaskKind, request: Request, context: SDBoxRequestContext) async throws -> Response {
        var body = try await request.jsonBody(limit: services.configuration.http.maxBodyBytes)
        let callback = try services.callback(taking: &body, request: request)
        let task = try await services.submitGeneration(kind: kind, body: body, caller: context.caller, userOptions: true, callback: callback)
        if request.headers[.requestType]?.lowercased() == "async" { return try Response.taskAnswer(task) }
        let (result, images) = try await outcome(of: task)
        let info = try result.info.stringValue ?? String(decoding: result.info.encoded(), as: UTF8.self)
        return Response.json(["images": .array(images), "parameters": result.parameters, "info": .string(info)])
    }

    /// Runs an extras request synchronously and answers as A1111: `{html_info, image}` for one image,
    /// `{html_info, images}` for a batch.
    func postprocess(kind: TaskKind, request: Request, context: SDBoxRequestContext) async throws -> Response {
        var body = try await request.jsonBody(limit: services.configuration.http.maxBodyBytes)
        let callback = try services.callback(taking: &body, request: request)
        let task = try await services.submitPostprocessing(kind: kind, body: body, caller: context.caller, callback: callback)
        if request.headers[.requestType]?.lowercased() == "async" { return try Response.taskAnswer(task) }
        let (result, images) = try await outcome(of: task)
        let html = result.info["html_info"] ?? ""
        if kind == .extraSingleImage {
            return Response.json(["html_info": html, "image": images.first ?? ""])
        }
        return Response.json(["html_info": html, "images": .array(images)])
    }

    /// Waits for a task and returns its result with its images as base64; a failed task is a 500.
    func outcome(of task: TaskRecord) async throws -> (TaskResult, [JSONValue]) {
        guard let final = await services.scheduler.runner.waitUntilFinal(task.id) else { throw APIError.taskNotFound(task.id) }
        guard final.state != .failed, let result = final.result else {
            throw APIError.taskDidNotSucceed(final)
        }
        var images: [JSONValue] = []
        for key in result.images {
            images.append(.string(try await services.objects.get(key).base64EncodedString()))
        }
        return (result, images)
    }

    func runningTasks(of user: String) async throws -> [TaskRecord] {
        var tasks: [TaskRecord] = []
        for id in services.scheduler.runner.runningTaskIDs() {
            if let task = try await services.tasks.get(id), task.user == user, task.state == .running { tasks.append(task) }
        }
        return tasks.sorted { ($0.startedAt ?? $0.createdAt) < ($1.startedAt ?? $1.createdAt) }
    }

    /// The progress of the user's most recently started running task, or idle.
    func currentProgress(user: String) async throws -> A1111.Progress {
        guard let latest = try await runningTasks(of: user).last else { return .idle }
        if case .running(let report?) = await services.scheduler.progress(of: latest.id) { return report }
        return .idle
    }

    /// The user's options over the defaults a fresh A1111 reports, with the default checkpoint's title.
    func options(for user: String) async throws -> [String: JSONValue] {
        var options: [String: JSONValue] = [
            "sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1, "samples_format": "png", "eta_noise_seed_delta": 0,
        ]
        options.merge(try await services.catalog.options(forUser: user)) { _, own in own }
        if let model = try? await services.defaultModel(for: user) {
            options["sd_model_checkpoint"] = .string(model.checkpoint?.title ?? model.name)
            options["sd_checkpoint_hash"] = model.etag.isEmpty ? .null : .string(model.etag)
        }
        return options
    }
}

import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix
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
            return try Response.json(progress)
        }
        api.post("interrupt") { _, context in
            for task in try await runningTasks(of: context.user) { _ = try await services.scheduler.cancel(task.id) }
            return try Response.json(A1111.Empty())
        }
        api.post("skip") { _, _ in try Response.json(A1111.Empty()) }
        api.get("sd-models") { _, _ in
            let models = try await services.models.refresh().filter { $0.type == .stableDiffusion }
            return try Response.json(models.map { $0.checkpoint.map(A1111.SDModel.init(checkpoint:)) ?? A1111.SDModel(path: $0.ossPath) })
        }
        api.get("sd-vae") { _, _ in
            let vaes = try await services.models.refresh().filter { $0.type == .sdVae }
            return try Response.json(vaes.map { A1111.SDVae(model_name: $0.name, filename: $0.ossPath) })
        }
        api.get("loras") { _, _ in
            let loras = try await services.models.refresh().filter { $0.type == .lora }
            return try Response.json(loras.map { A1111.Lora(name: ($0.name as NSString).deletingPathExtension, path: $0.ossPath) })
        }
        api.get("embeddings") { _, _ in
            let embeddings = try await services.models.refresh().filter { $0.type == .embedding }
            // Each file's header is read, off the event loops.
            let loaded = try await NIOThreadPool.singleton.runIfActive {
                embeddings.map { embedding in
                    let size = Checkpoint.embeddingShape(ofFileAt: embedding.ossPath)
                    return ((embedding.name as NSString).deletingPathExtension, A1111.Embedding(shape: size?.width ?? 0, vectors: size?.vectors ?? 0))
                }
            }
            return try Response.json(A1111.Embeddings(loaded: Dictionary(loaded) { first, _ in first }))
        }
        api.get("samplers") { _, _ in try Response.json(A1111.samplers) }
        api.get("schedulers") { _, _ in try Response.json(A1111.schedulers) }
        api.get("upscalers") { _, _ in
            let registered = try await services.models.refresh().filter { $0.type == .upscaler }.map { model in
                A1111.Upscaler(
                    name: (model.name as NSString).deletingPathExtension, model_name: "ESRGAN_4x", model_path: model.ossPath,
                    model_url: nil, scale: 4
                )
            }
            return try Response.json(A1111.upscalers + registered)
        }
        api.get("latent-upscale-modes") { _, _ in try Response.json(A1111.latentUpscaleModes) }
        api.get("memory") { _, _ in try Response.json(await memory()) }
        api.get("scripts") { _, _ in try Response.json(A1111.Scripts()) }
        api.get("options") { _, context in try Response.json(try await options(for: context.user)) }
        api.post("options") { request, context in
            try await services.updateOptions(try await request.jsonObject(limit: services.configuration.http.maxBodyBytes), for: context.user)
            return try Response.json(JSONValue.null)
        }
    }

    /// Runs a generation synchronously and answers as A1111: base64 PNGs, parameters, `info` as a JSON string:
    /// the worker's own answer as it comes, when sdbox adds nothing to it (its images are stored
    /// meanwhile); else the task's recorded result. An interrupted generation answers with the images
    /// made so far, as A1111 does.
    func generate(kind: TaskKind, request: Request, context: SDBoxRequestContext) async throws -> Response {
        var body = try await request.jsonBody(limit: services.configuration.http.maxBodyBytes)
        let submission = try services.submission(taking: &body, request: request, context: context)
        let task = try await services.submitGeneration(kind: kind, body: body, submission: submission)
        return try await services.answer(task, request: request) { answer in
            .encodedJSON(answer)
        } whenFinal: { final in
            let (result, images) = try await outcome(of: final)
            let info = try result.info.stringValue ?? String(decoding: result.info.encoded(), as: UTF8.self)
            return try Response.json(A1111.GenerationResponse(images: images, parameters: result.parameters, info: info))
        }
    }

    /// Runs an extras request synchronously and answers as A1111: `{html_info, image}` for one image,
    /// `{html_info, images}` for a batch: the worker's own answer as it comes.
    func postprocess(kind: TaskKind, request: Request, context: SDBoxRequestContext) async throws -> Response {
        var body = try await request.jsonBody(limit: services.configuration.http.maxBodyBytes)
        let submission = try services.submission(taking: &body, request: request, context: context)
        let task = try await services.submitPostprocessing(kind: kind, body: body, submission: submission)
        return try await services.answer(task, request: request) { answer in
            .encodedJSON(answer)
        } whenFinal: { final in
            let (result, images) = try await outcome(of: final)
            let html = result.info["html_info"]?.stringValue ?? ""
            if kind == .extraSingleImage {
                return try Response.json(A1111.ExtrasSingleImageResponse(html_info: html, image: images.first ?? ""))
            }
            return try Response.json(A1111.ExtrasBatchImagesResponse(html_info: html, images: images))
        }
    }

    /// A final task's result with its images as base64, read back from the object store; a task cancelled
    /// before any image is a 500.
    func outcome(of final: TaskRecord) async throws -> (TaskResult, [String]) {
        guard let result = final.result else { throw APIError.taskDidNotSucceed(final) }
        var images: [String] = []
        for key in result.images {
            images.append(try await services.objects.get(key).base64EncodedString())
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

    /// The box's memory as A1111 reports a process's: RAM from `/proc/meminfo` (bytes), and the GPUs' total
    /// with what sdbox has planned on them as used, or A1111's `{error}` when there is no GPU.
    func memory() async -> A1111.Memory {
        let meminfo = await (try? NIOThreadPool.singleton.runIfActive { try String(contentsOfFile: "/proc/meminfo", encoding: .utf8) }) ?? ""
        var kibibytes: [String: Int64] = [:]
        for line in meminfo.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " })
            if parts.count >= 2, let value = Int64(parts[1]) { kibibytes[String(parts[0])] = value }
        }
        let total = (kibibytes["MemTotal"] ?? 0) * 1024
        let free = (kibibytes["MemAvailable"] ?? kibibytes["MemFree"] ?? 0) * 1024
        let ram = ["free": free, "used": total - free, "total": total]
        let gpus = await services.scheduler.gpus()
        guard !gpus.isEmpty else { return A1111.Memory(ram: ram, cuda: ["error": "no CUDA device on this box"]) }
        let planned = gpus.reduce(Int64(0)) { $0 + Int64($1.plannedMiB) << 20 }
        let gpuTotal = gpus.reduce(Int64(0)) { $0 + Int64($1.memoryMiB) << 20 }
        return A1111.Memory(
            ram: ram, cuda: ["system": ["free": .integer(gpuTotal - planned), "used": .integer(planned), "total": .integer(gpuTotal)]]
        )
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

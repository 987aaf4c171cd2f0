import Foundation
import HTTPTypes
import Logging
import NIOCore
import ObjectStore
import SDBoxCore
import Scheduler
import Storage

/// The parts of a running sdbox that routes use, bundled so each route file takes one value.
public struct Services: Sendable {
    public let configuration: ServerConfiguration
    public let tasks: any TaskStore
    public let catalog: any CatalogStore
    public let models: ModelRegistry
    public let scheduler: Scheduler
    public let objects: ObjectStore
    public let signer: URLSigner
    public let keys: any KeyStore
    /// Users who sign in with a password, and their sessions.
    public let accounts: UserAccounts
    /// The quotas per user and per API key, and what each used.
    public let quotas: QuotaGuard
    public let logger: Logger
    public let inputs: ImageInputResolver
    public let thumbnails: ThumbnailService
    /// This box in its fleet, when the database is PostgreSQL.
    public let fleet: FleetMember?

    public init(
        configuration: ServerConfiguration, tasks: any TaskStore, catalog: any CatalogStore, models: ModelRegistry,
        scheduler: Scheduler, objects: ObjectStore, signer: URLSigner, keys: any KeyStore, accounts: UserAccounts, quotas: QuotaGuard,
        logger: Logger, inputs: ImageInputResolver, thumbnails: ThumbnailService, fleet: FleetMember? = nil
    ) {
        self.fleet = fleet
        self.keys = keys
        self.accounts = accounts
        self.quotas = quotas
        self.logger = logger
        self.configuration = configuration
        self.tasks = tasks
        self.catalog = catalog
        self.models = models
        self.scheduler = scheduler
        self.objects = objects
        self.signer = signer
        self.inputs = inputs
        self.thumbnails = thumbnails
    }
}

extension Services {
    /// The checkpoint a user's requests use when they name none: the user's `sd_model_checkpoint`
    /// option (from `options` when the caller has read them), else the first checkpoint by name.
    package func defaultModel(for user: String, options: [String: JSONValue]? = nil) async throws -> ModelRecord {
        let options = if let options { options } else { try await catalog.options(forUser: user) }
        if let chosen = options["sd_model_checkpoint"]?.stringValue,
            let model = try await models.resolve(chosen)
        {
            return model
        }
        // The catalogue first; the folder is rescanned only when it knows no checkpoint (as resolveModel does),
        // so a request without a model does not list the folders each time.
        var known = try await models.models(type: .stableDiffusion)
        if known.isEmpty { known = try await models.refresh().filter { $0.type == .stableDiffusion } }
        guard let first = known.first else {
            throw APIError(.notFound, "no model", detail: "the models folder holds no checkpoint; upload one or set stable_diffusion_model")
        }
        return first
    }

    /// The checkpoint a request of `user` runs on: the one it names (by any name A1111 accepts; 404 when
    /// there is none), else the user's default.
    package func model(named name: String?, for user: String, options: [String: JSONValue]? = nil) async throws -> ModelRecord {
        if let name, !name.isEmpty { return try await resolveModel(name) }
        return try await defaultModel(for: user, options: options)
    }

    /// Finds a checkpoint by any of the names A1111 accepts, rescanning the folder once when it is not known.
    package func resolveModel(_ name: String) async throws -> ModelRecord {
        if let model = try await models.resolve(name) { return model }
        try await models.refresh()
        if let model = try await models.resolve(name) { return model }
        throw APIError(.notFound, "model not found", detail: "no checkpoint named '\(name)' in the models folder")
    }

    /// Changes a user's options (A1111's, as `POST /sdapi/v1/options` and the original's `POST /options`
    /// take them): `sd_model_checkpoint` must name a checkpoint (404 otherwise) and is kept as its file
    /// name; `sd_checkpoint_hash` follows from it and is not stored.
    package func updateOptions(_ changes: [String: JSONValue], for user: String) async throws {
        var changes = changes
        if let checkpoint = changes["sd_model_checkpoint"] {
            guard let name = checkpoint.stringValue else {
                throw APIError(.badRequest, "invalid request", detail: "field 'sd_model_checkpoint' must be a string", extra: ["field": "sd_model_checkpoint"])
            }
            changes["sd_model_checkpoint"] = .string(try await resolveModel(name).name)
        }
        changes["sd_checkpoint_hash"] = nil
        _ = try await catalog.updateOptions(forUser: user, changes)
    }

    /// Validates a generation request, persists it as a task and queues it, with the user's options
    /// (`POST /options`, `POST /sdapi/v1/options`) as `override_settings` under the request's own; a
    /// client-chosen id that names a task already returns that task.
    package func submitGeneration(kind: TaskKind, body: JSONValue, submission: Submission) async throws -> TaskRecord {
        if let existing = try await existingTask(for: submission) { return existing }
        let user = submission.caller.user
        let generation: GenerationRequest
        do {
            generation = try GenerationRequest(kind: kind, body: body, limits: configuration.limits.generation)
        } catch {
            throw APIError.badRequest(error)
        }
        let pixels = generation.width * generation.height * generation.batchSize * generation.iterations
        guard pixels <= configuration.limits.maxRequestPixels else {
            throw APIError(
                .unprocessableContent, "too many pixels",
                detail: "width × height × batch_size × n_iter is \(pixels); the limit is \(configuration.limits.maxRequestPixels) (limits.maxPixels)",
                extra: ["field": "width"]
            )
        }
        let userOptions = try await catalog.options(forUser: user)
        let model = try await model(named: generation.model, for: user, options: userOptions)
        var workerBody = try await inputs.resolveGeneration(generation.workerBody, user: user)
        let options = userOptions.filter { !Self.checkpointOptions.contains($0.key) }
        if !options.isEmpty {
            let requested = workerBody["override_settings"]?.objectValue ?? [:]
            workerBody["override_settings"] = .object(options.merging(requested) { _, own in own })
        }
        try await checkModelReferences(in: &workerBody)
        return try await enqueue(kind: kind, model: model.name, workerBody: workerBody, priority: generation.priority, submission: submission)
    }

    /// Validates a post-processing (extras) request, resolves its images, checks the size of what it
    /// would make, persists it as a task and queues it on the post-processing pool: the request's
    /// `stable_diffusion_model`, else `images.postprocessingModel`, else the caller's default checkpoint.
    package func submitPostprocessing(kind: TaskKind, body: JSONValue, submission: Submission) async throws -> TaskRecord {
        if let existing = try await existingTask(for: submission) { return existing }
        let user = submission.caller.user
        let extras: ExtrasRequest
        do {
            extras = try ExtrasRequest(kind: kind, body: body, limits: configuration.limits.generation)
        } catch {
            throw APIError.badRequest(error)
        }
        let (workerBody, sizes) = try await inputs.resolveExtras(extras.workerBody, kind: kind, user: user)
        let field = extras.resizeMode == 1 ? "upscaling_resize_w" : "upscaling_resize"
        for (width, height) in sizes {
            let output = extras.outputSize(width: width, height: height)
            let maxSide = configuration.limits.generation.maxSide
            guard output.width <= maxSide, output.height <= maxSide, output.width * output.height <= configuration.images.maxPixels else {
                throw APIError.badRequest(RequestValidationError(
                    field: field,
                    message: "the output would be \(output.width)x\(output.height): over \(maxSide) pixels a side or \(configuration.images.maxPixels) pixels in all"
                ))
            }
        }
        let model = try await model(named: extras.model ?? configuration.images.postprocessingModel, for: user)
        return try await enqueue(kind: kind, model: model.name, workerBody: workerBody, priority: extras.priority, submission: submission)
    }

    /// Counts a request in its user's share of the queue, or refuses it: 429 when the user already has
    /// `limits.maxQueuedPerUser` tasks queued or running, or their requests with this one would take more
    /// than `limits.maxQueuedBytesPerUser` of storage; 413 when this request alone is over that. In a
    /// fleet, the user's tasks that the other boxes accepted count too (read from the database).
    /// Returns whether the task was counted now (false: a task of this id was counted already).
    func admit(_ request: JSONValue, of user: String, task id: String) async throws -> Bool {
        let size = request.storageSize
        let limit = configuration.limits.maxQueuedBytesPerUser
        guard size <= limit else {
            throw APIError(.contentTooLarge, "request too large", detail: "the request takes \(size) bytes stored; the limit is \(limit) (limits.maxQueuedBytesPerUser)")
        }
        let elsewhere = try await fleet?.usageElsewhere(of: user, upTo: configuration.limits.maxQueuedPerUser) ?? ActiveUsage()
        let usage: ActiveUsage
        switch scheduler.runner.usage.admit(
            task: id, user: user, bytes: size, maxTasks: configuration.limits.maxQueuedPerUser, maxBytes: limit, elsewhere: elsewhere
        ) {
        case .admitted: return true
        case .alreadyCounted: return false
        case .refused(let counted): usage = counted
        }
        if usage.tasks >= configuration.limits.maxQueuedPerUser {
            throw APIError(
                .tooManyRequests, "queue full",
                detail: "you have \(configuration.limits.maxQueuedPerUser) tasks queued or running (limits.maxQueuedPerUser); wait for some to finish"
            )
        }
        throw APIError(
            .tooManyRequests, "queue full",
            detail: "your queued and running tasks take \(usage.bytes) bytes stored and this one \(size); the limit is \(limit) (limits.maxQueuedBytesPerUser); wait for some to finish"
        )
    }

    /// Persists a task for the model's pool, with its webhook if any, and queues it; returns once it is on
    /// disk. The task counts in its user's share of the queue (``admit(_:of:)``) and against its user's
    /// and API key's quotas (``QuotaGuard/admit(_:)``, 429 when over one). An admin's `priority` orders the task against every user's; anyone else's orders their own
    /// tasks only. A client-chosen id that a concurrent submission took first returns that task (or 409 if
    /// it is another user's).
    ///
    /// A task whose caller waits for it (and chose no id) is queued while it is written: it may reach its
    /// worker meanwhile (the worker's time then hides the write's), and is marked running only once
    /// written; the caller hears of it only once it is on disk. A task answered at once with its id is
    /// written first.
    package func enqueue(
        kind: TaskKind, model: String, workerBody: JSONValue, priority: Int, submission: Submission
    ) async throws -> TaskRecord {
        let caller = submission.caller
        let id = submission.taskID ?? TaskID.make()
        let counted = try await admit(workerBody, of: caller.user, task: id)
        let ledger = scheduler.runner.usage
        func uncount() { if counted { ledger.withdraw(task: id) } }
        var record = TaskRecord(id: id, kind: kind, model: model, user: caller.user, request: workerBody, priority: priority)
        record.priorityAcrossUsers = caller.isAdmin && priority != 0 ? true : nil
        record.callback = submission.callback
        record.apiKey = caller.apiKey
        do {
            try quotas.admit(record)
        } catch {
            uncount()
            throw error
        }
        let stored: (task: TaskRecord, inserted: Bool)
        do {
            try await catalog.ensurePool(model: model)
            if submission.waits && submission.taskID == nil && !scheduler.sharesQueue {
                return try await enqueueWhileWriting(record)
            }
            stored = submission.taskID == nil ? (try await tasks.insert(record), true) : try await tasks.insertUnlessPresent(record)
        } catch {
            uncount()
            quotas.withdraw(record)
            throw error
        }
        guard stored.inserted else {
            uncount()
            quotas.withdraw(record)
            guard let existing = try await existingTask(for: submission) else { throw APIError.taskNotFound(record.id) }
            return existing
        }
        // In a fleet, the box with room claims it (the insert told every box).
        if !scheduler.sharesQueue { await scheduler.submit(stored.task) }
        return stored.task
    }

    /// Queues a task, then writes it, and returns it once it is on disk; when it cannot be written, it is
    /// taken back from the scheduler and the error thrown. A task granted a worker at once is written
    /// already running: one write instead of two (``TaskInsertion``).
    func enqueueWhileWriting(_ record: TaskRecord) async throws -> TaskRecord {
        let insertion = scheduler.runner.beginWriting(record)
        await scheduler.submit(record)
        do {
            let stored = try await tasks.insert(insertion.seal())
            scheduler.runner.written(insertion, .success(stored))
            return stored
        } catch {
            // Taken back first: a grant in between would start a run for a task that does not exist.
            await scheduler.withdraw(record.id)
            scheduler.runner.written(insertion, .failure(error))
            throw error
        }
    }

    /// Checks the VAE (`override_settings.sd_vae`) and the LoRAs a prompt names (`<lora:name:weight>`)
    /// against the registry, and writes the VAE's file name as A1111 wants. An unknown VAE is a 400. A
    /// LoRA the box lacks does what A1111 does: the image is made without it and the result's `info`
    /// says so (`comments: "Networks not found: ..."`, `lorasNotFound`); with `limits.strictLoras` it is
    /// a 400.
    func checkModelReferences(in body: inout JSONValue) async throws {
        if var overrides = body["override_settings"]?.objectValue, let vae = overrides["sd_vae"]?.stringValue,
            !["", "Automatic", "None"].contains(vae)
        {
            guard let record = try await models.resolve(vae, type: .sdVae) else {
                throw APIError(.badRequest, "unknown VAE", detail: "no VAE named '\(vae)' in the models folder (VAE/)", extra: ["field": "sd_vae"])
            }
            overrides["sd_vae"] = .string(record.name)
            body["override_settings"] = .object(overrides)
        }
        var missing: [String] = []
        for field in ["prompt", "negative_prompt"] {
            guard let prompt = body[field]?.stringValue, prompt.contains("<lora:") else { continue }
            for name in LoraTags.names(in: prompt) where try await models.resolve(name, type: .lora) == nil {
                guard !configuration.limits.strictLoras else {
                    throw APIError(
                        .badRequest, "unknown LoRA", detail: "the \(field) names LoRA '\(name)', which is not in the models folder (Lora/)",
                        extra: ["field": .string(field)]
                    )
                }
                if !missing.contains(name) { missing.append(name) }
            }
        }
        if !missing.isEmpty {
            body[TaskRecord.infoAdditionsKey] = [
                "comments": .string("Networks not found: \(missing.joined(separator: ", "))\n"), "lorasNotFound": .array(missing.map { .string($0) }),
            ]
        }
    }

    /// Options that choose the checkpoint, which sdbox handles itself rather than forwarding.
    static let checkpointOptions: Set<String> = ["sd_model_checkpoint", "sd_checkpoint_hash"]

    /// A task the caller may see (its own; any for an admin), or 404 (also for another user's task, so that
    /// its existence does not leak).
    package func task(_ id: String, for caller: Caller) async throws -> TaskRecord {
        guard TaskID.isWellFormed(id), let task = try await tasks.get(id), task.user == caller.user || caller.isAdmin else {
            throw APIError.taskNotFound(id)
        }
        return task
    }
}

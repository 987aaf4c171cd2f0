import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import SDBoxCore
import Scheduler
import Storage

/// Worker pools ("functions", one per checkpoint) and the workers in them: `GET /list/sdapi/functions`,
/// `POST /batch_update_sd_resource`, `POST /del/sd/functions`, `POST /restart` (the original's) and
/// `GET /workers`.
struct PoolRoutes {
    let services: Services

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/list/sdapi/functions") { _, _ in
            try await services.models.refresh()
            var functions: [PoolList.Pool] = []
            for function in try await services.catalog.pools().sorted(by: { $0.model < $1.model }) {
                let settings = await services.scheduler.settings(ofPool: function.model)
                functions.append(.init(functionName: function.functionName, model: function.model, settings: settings, ownSettings: function.settings))
            }
            return try Response.json(PoolList(functions: functions))
        }
        router.get("/workers") { _, _ in
            let scheduler = services.scheduler
            return try Response.json(WorkersAnswer(
                node: services.configuration.node.name, workers: await scheduler.workers(), gpus: await scheduler.gpus(), gpuSource: scheduler.inventory.source.rawValue,
                cpuSlots: scheduler.inventory.cpuSlots, maxInstances: services.configuration.scheduler.maxInstances,
                hostMemoryMiB: services.configuration.scheduler.hostMemoryMiB, parkedMiB: await scheduler.parkedMemoryMiB(),
                queues: await scheduler.queueDepths(), coldStarts: await scheduler.coldStarts(), paused: await scheduler.queuePause(), defaultProfile: services.configuration.workers.defaultProfileName,
                referenceWorker: services.configuration.workers.usesReferenceWorker, nodes: try await services.fleet?.nodes(),
                workersElsewhere: services.fleet == nil ? nil : await scheduler.workersElsewhere()
            ))
        }
        router.post("/restart") { _, _ in
            // The original's: every pool's workers start afresh; running tasks finish first.
            _ = await services.scheduler.restartWorkers()
            return try Response.json(["message": "success"])
        }
        router.post("/batch_update_sd_resource") { request, _ in
            try await batchUpdate(try await request.jsonObject(limit: 1 << 20))
        }
        router.post("/del/sd/functions") { request, _ in
            try await deleteFunctions(try await request.jsonObject(limit: 1 << 20))
        }
    }

    /// Fields of the original's `batch_update_sd_resource` that only meant something on the cloud.
    static let cloudOnlyFields: Set<String> = [
        "cpu", "memorySize", "instanceType", "diskSize", "instanceConcurrency", "vpcConfig", "nasConfig", "ossMountConfig", "mountPoints",
    ]

    /// Applies resource settings to the named pools (all pools when `models` is absent). An `image` that
    /// names no launch profile but looks like a container image (the original's) is ignored and listed.
    func batchUpdate(_ body: [String: JSONValue]) async throws -> Response {
        var update = try PoolUpdate(body)
        if let image = update.settings.profile, services.configuration.scheduler.profiles[image] == nil, image.contains(where: { "/:".contains($0) }) {
            update.settings.profile = nil
            update.ignored.append("image")
        }
        let names: [String]
        if let models = update.models {
            names = models
        } else {
            names = try await services.catalog.pools().map(\.model).sorted()
        }
        var failed: [String] = []
        var messages: [String] = []
        var updated: [String] = []
        for name in names {
            do {
                guard let model = try await services.models.resolve(name) else {
                    throw PoolSettingsError("no checkpoint named '\(name)'")
                }
                let current = try await services.catalog.pools().first { $0.model == model.name }?.settings ?? PoolSettings()
                let function = try await services.scheduler.configurePool(model: model.name, settings: update.applied(to: current))
                updated.append(function.functionName)
            } catch {
                failed.append(PoolRecord.name(forModel: name))
                messages.append("\(name): \(error)")
            }
        }
        var answer = PoolUpdateAnswer(status: failed.isEmpty ? "success" : "fail", failFuncList: failed, updated: updated, ignored: update.ignored.sorted())
        guard failed.isEmpty else {
            answer.errMsg = messages.joined(separator: "|")
            answer.errors = messages
            answer.error = "some pools were not updated"
            answer.detail = messages.joined(separator: "; ")
            answer.message = answer.detail
            answer.code = 400
            return try Response.json(answer, status: .badRequest)
        }
        return try Response.json(answer)
    }

    /// Deletes pools by function name (or model name): their queued tasks fail, their workers stop.
    func deleteFunctions(_ body: [String: JSONValue]) async throws -> Response {
        guard let names = body["functions"]?.arrayValue?.compactMap(\.stringValue), !names.isEmpty else {
            throw APIError(.badRequest, "invalid request", detail: "field 'functions' must be a non-empty array of function names", extra: ["field": "functions"])
        }
        let functions = try await services.catalog.pools()
        var fails: [PoolDeletionAnswer.Failure] = []
        for name in names {
            guard let function = functions.first(where: { $0.functionName == name || $0.model == name }) else {
                fails.append(.init(functionName: name, err: "no function named '\(name)'"))
                continue
            }
            try await services.scheduler.removePool(model: function.model, reason: "the pool \(function.functionName) was deleted")
        }
        guard fails.isEmpty else {
            return try Response.json(
                PoolDeletionAnswer(
                    status: "fail", fails: fails, error: "function not found", detail: "some functions do not exist",
                    message: "some functions do not exist", code: 404
                ), status: .notFound
            )
        }
        return try Response.json(PoolDeletionAnswer(status: "success"))
    }
}

/// A `POST /batch_update_sd_resource` body, checked field by field.
struct PoolUpdate {
    var models: [String]?
    var settings = PoolSettings()
    /// Environment variables to remove from the pool's (`null` values in `env`).
    var removedEnvironment: [String] = []
    var ignored: [String] = []

    init(_ body: [String: JSONValue]) throws {
        func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
            guard let value = body[name], !value.isNull else { return nil }
            guard let number = value.integerValue, range.contains(Int(clamping: number)) else {
                throw APIError(.badRequest, "invalid request", detail: "field '\(name)' must be an integer from \(range.lowerBound) to \(range.upperBound)", extra: ["field": .string(name)])
            }
            return Int(number)
        }
        func invalid(_ name: String, _ what: String) -> APIError {
            APIError(.badRequest, "invalid request", detail: "field '\(name)' must be \(what)", extra: ["field": .string(name)])
        }
        let known: Set<String> = ["models", "image", "extraArgs", "gpuMemorySize", "hostMemorySize", "timeout", "env", "minInstances", "maxInstances", "idleTimeout"]
        for key in body.keys.sorted() where !known.contains(key) {
            guard PoolRoutes.cloudOnlyFields.contains(key) else { throw invalid(key, "one of the known fields (\(known.sorted().joined(separator: ", ")))") }
            ignored.append(key)
        }
        if let models = body["models"], !models.isNull {
            guard let names = models.arrayValue?.compactMap(\.stringValue), names.count == models.arrayValue?.count else {
                throw invalid("models", "an array of model names")
            }
            self.models = names
        }
        settings.gpuMemoryMiB = try integer("gpuMemorySize", in: 0...(1 << 24))
        settings.hostMemoryMiB = try integer("hostMemorySize", in: 0...(1 << 24))
        settings.taskTimeoutSeconds = try integer("timeout", in: 1...(7 * 86400))
        settings.minInstances = try integer("minInstances", in: 0...1024)
        settings.maxInstances = try integer("maxInstances", in: 1...1024)
        settings.idleTimeoutSeconds = try integer("idleTimeout", in: 0...(30 * 86400))
        if let image = body["image"], !image.isNull {
            guard let name = image.stringValue, !name.isEmpty else { throw invalid("image", "the name of a launch profile") }
            settings.profile = name
        }
        if let extra = body["extraArgs"], !extra.isNull {
            if let text = extra.stringValue {
                do {
                    settings.extraArgs = try ShellWords.split(text)
                } catch {
                    throw invalid("extraArgs", "arguments as a shell would read them (\(error))")
                }
            } else if let items = extra.arrayValue?.compactMap(\.stringValue), items.count == extra.arrayValue?.count {
                settings.extraArgs = items
            } else {
                throw invalid("extraArgs", "a string of arguments or an array of strings")
            }
        }
        if let env = body["env"], !env.isNull {
            guard let object = env.objectValue else { throw invalid("env", "an object of strings") }
            var environment: [String: String] = [:]
            for (key, value) in object.sorted(by: { $0.key < $1.key }) {
                guard !key.isEmpty, !key.contains("=") else { throw invalid("env", "an object of strings (null removes a variable)") }
                if value.isNull {
                    removedEnvironment.append(key)
                    continue
                }
                guard let text = value.stringValue ?? value.integerValue.map(String.init) else {
                    throw invalid("env", "an object of strings (null removes a variable)")
                }
                environment[key] = text
            }
            settings.environment = environment
        }
        if let min = settings.minInstances, let max = settings.maxInstances, min > max {
            throw invalid("minInstances", "at most maxInstances")
        }
    }

    /// A pool's own settings with this update's fields set over them; `env` is merged into the pool's
    /// environment, as the original merges it.
    func applied(to current: PoolSettings) -> PoolSettings {
        var result = settings.merged(over: current)
        if settings.environment != nil || !removedEnvironment.isEmpty {
            var environment = (current.environment ?? [:]).merging(settings.environment ?? [:]) { _, new in new }
            for key in removedEnvironment { environment[key] = nil }
            result.environment = environment
        }
        return result
    }
}

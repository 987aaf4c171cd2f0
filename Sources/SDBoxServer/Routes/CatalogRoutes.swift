import Appliance
import Foundation
import Hummingbird
import ObjectStore
import SDBoxCore
import Scheduler
import Storage

/// The models catalogue as the original has it: `GET /models` (optionally filtered with `?type=` and
/// `?status=`), `GET /models/{name}`, and for admins `POST /models {type, name, ossPath}` (register),
/// `PUT /models/{name}` (point at another file; its workers restart on it) and `DELETE /models/{name}`
/// (the record stays, `deleted`). A name without `?type=` is looked up over the types in turn.
struct CatalogRoutes {
    let services: Services

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/models/:name") { request, context in
            let record = try await existing(try AdminModelRoutes.modelName(context.parameters.require("name")), request: request)
            return try Response.json(ModelView(record, status: status(of: record, workers: await services.scheduler.workers())))
        }
        router.post("/models") { request, _ in
            let body = try await request.jsonObject(limit: 1 << 20)
            let fields = try ["type", "name", "ossPath"].map { key in
                guard let value = body[key]?.stringValue, !value.isEmpty else {
                    throw APIError(.badRequest, "invalid request", detail: "bad request body: '\(key)' is required (type, name and ossPath)", extra: ["field": .string(key)])
                }
                return value
            }
            let type = try AdminModelRoutes.modelType(fields[0])
            let path = try await services.models.file(forOSSPath: fields[2], objectsRoot: services.objects.root)
            if let known = try await services.models.record(named: fields[1], type: type), known.status != .deleted {
                guard services.models.model(known, isFileAt: path) else {
                    throw APIError(.conflict, "model exists", detail: "\(type.rawValue)/\(fields[1]) is registered with another file; PUT /models/\(fields[1]) points it at this one")
                }
                return try Response.json(["message": "models existed"])
            }
            _ = try await services.models.register(type: type, path: path, name: fields[1])
            return try Response.json(["message": "register success"])
        }
        router.put("/models/:name") { request, context in
            let unregistered = "model not register, please register first (POST /models)"
            let record = try await existing(try AdminModelRoutes.modelName(context.parameters.require("name")), request: request, missing: unregistered)
            guard record.status != .deleted else { throw APIError(.notFound, "model not found", detail: unregistered) }
            let body = try await request.jsonObject(limit: 1 << 20)
            guard let ossPath = body["ossPath"]?.stringValue, !ossPath.isEmpty else {
                throw APIError(.badRequest, "invalid request", detail: "bad request body: 'ossPath' is required", extra: ["field": "ossPath"])
            }
            let path = try await services.models.file(forOSSPath: ossPath, objectsRoot: services.objects.root)
            if services.models.model(record, isFileAt: path) {
                return try Response.json(["message": "models existed and not change"])
            }
            _ = try await services.models.repoint(record, to: path)
            if record.type == .stableDiffusion { _ = await services.scheduler.restartWorkers(model: record.name) }
            return try Response.json(["message": "success"])
        }
        router.delete("/models/:name") { request, context in
            let record = try await existing(try AdminModelRoutes.modelName(context.parameters.require("name")), request: request)
            guard record.status != .deleted else { throw APIError(.notFound, "model not found", detail: "model not exist: \(record.name) is deleted") }
            try await services.deleteModel(record.type, named: record.name, force: request.uri.queryParameters.get("force") == "true") {
                _ = try await services.models.markDeleted(record)
            }
            return try Response.json(["message": "delete success"])
        }
        router.get("/models") { request, _ in
            let type = try request.uri.queryParameters.get("type").map(AdminModelRoutes.modelType)
            let wantedStatus = request.uri.queryParameters.get("status")
            if let wantedStatus, ModelStatus(rawValue: wantedStatus) == nil {
                throw APIError(.badRequest, "invalid request", detail: "unknown status '\(wantedStatus)'", extra: ["field": "status"])
            }
            let workers = await services.scheduler.workers()
            let views = try await services.models.refresh(includingDeleted: true)
                .filter { type == nil || $0.type == type }
                .map { ModelView($0, status: status(of: $0, workers: workers)) }
                .filter { wantedStatus == nil || $0.status.rawValue == wantedStatus }
            return try Response.json(views)
        }
    }

    /// The record of a model named in a path (with `?type=`, of that type), `deleted` ones included; 404
    /// with `missing` (by default the original's "model not exist") when there is none.
    func existing(_ name: String, request: Request, missing: String? = nil) async throws -> ModelRecord {
        let type = try request.uri.queryParameters.get("type").map(AdminModelRoutes.modelType)
        guard let record = try await services.models.record(named: name, type: type) else {
            throw APIError(.notFound, "model not found", detail: missing ?? "model not exist: no model named '\(name)'")
        }
        return record
    }

    /// A model's status: its record's, unless a worker holds it on a GPU (`loaded`) or is loading it or
    /// bringing it back from system RAM (`loading`); a parked checkpoint is not loaded.
    func status(of record: ModelRecord, workers: [WorkerInfo]) -> ModelStatus {
        guard record.type == .stableDiffusion, record.status != .registering else { return record.status }
        let states = workers.filter { $0.model == record.name && $0.state != .stopping }.map(\.state)
        if states.contains(.ready) || states.contains(.busy) { return .loaded }
        if states.contains(.starting) || states.contains(.reloading) { return .loading }
        return record.status
    }

    /// A model as the API shows it: the original's fields plus size, A1111's short hash and any error.
    struct ModelView: Encodable {
        let type: ModelType
        let name: String
        let ossPath: String
        let etag: String
        let shortHash: String?
        let status: ModelStatus
        let size: Int64
        let registeredTime: String
        let lastModificationTime: String
        let error: String?

        init(_ record: ModelRecord, status: ModelStatus? = nil) {
            type = record.type
            name = record.name
            ossPath = record.ossPath
            etag = record.etag
            shortHash = record.checkpoint?.shortHash
            self.status = status ?? record.status
            size = record.size
            registeredTime = record.registeredTime.ISO8601Format()
            lastModificationTime = record.lastModificationTime.ISO8601Format()
            error = record.error
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(type, forKey: .type)
            try container.encode(name, forKey: .name)
            try container.encode(ossPath, forKey: .ossPath)
            try container.encode(etag, forKey: .etag)
            try container.encode(shortHash, forKey: .shortHash)
            try container.encode(status, forKey: .status)
            try container.encode(size, forKey: .size)
            try container.encode(registeredTime, forKey: .registeredTime)
            try container.encode(lastModificationTime, forKey: .lastModificationTime)
            try container.encode(error, forKey: .error)
        }

        enum CodingKeys: String, CodingKey {
            case type, name, ossPath, etag, shortHash, status, size, registeredTime, lastModificationTime, error
        }
    }
}

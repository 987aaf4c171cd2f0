import Appliance
import Foundation
import Hummingbird
import SDBoxCore
import Scheduler

/// The models catalogue: `GET /models`, optionally filtered with `?type=` and `?status=`.
struct CatalogRoutes {
    let services: Services

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/models") { request, _ in
            let type = try request.uri.queryParameters.get("type").map(AdminModelRoutes.modelType)
            let wantedStatus = request.uri.queryParameters.get("status")
            if let wantedStatus, ModelStatus(rawValue: wantedStatus) == nil {
                throw APIError(.badRequest, "invalid request", detail: "unknown status '\(wantedStatus)'", extra: ["field": "status"])
            }
            let workers = await services.scheduler.workers()
            let views = try await services.models.refresh()
                .filter { type == nil || $0.type == type }
                .map { ModelView($0, status: status(of: $0, workers: workers)) }
                .filter { wantedStatus == nil || $0.status.rawValue == wantedStatus }
            return try Response.json(views)
        }
    }

    /// A model's status: its record's, unless a worker holds it (`loaded`) or is loading it (`loading`).
    func status(of record: ModelRecord, workers: [WorkerInfo]) -> ModelStatus {
        guard record.type == .stableDiffusion, record.status != .registering else { return record.status }
        let states = workers.filter { $0.model == record.name && $0.state != .stopping }.map(\.state)
        if states.contains(.ready) || states.contains(.busy) { return .loaded }
        if states.contains(.starting) { return .loading }
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

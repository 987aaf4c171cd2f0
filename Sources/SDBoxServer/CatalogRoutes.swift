import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ObjectStore
import SDBoxCore
import Scheduler
import Storage

/// The models catalogue: `GET /models`.
struct CatalogRoutes {
    let services: Services

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/models") { _, _ in
            let records = try await services.models.refresh()
            let workers = await services.scheduler.workers()
            return Response.json(.array(records.map { record in
                model(record, status: status(of: record, workers: workers))
            }))
        }
    }

    /// A model's status: its record's, unless a worker holds it (`loaded`) or is loading it (`loading`).
    func status(of record: ModelRecord, workers: [WorkerInfo]) -> ModelStatus {
        let states = workers.filter { $0.model == record.name }.map(\.state)
        if states.contains(.ready) || states.contains(.busy) { return .loaded }
        if states.contains(.starting) { return .loading }
        return record.status
    }

    func model(_ record: ModelRecord, status: ModelStatus) -> JSONValue {
        [
            "type": .string(record.type.rawValue), "name": .string(record.name), "ossPath": .string(record.ossPath),
            "etag": .string(record.etag), "status": .string(status.rawValue), "size": .integer(record.size),
            "shortHash": record.checkpoint.map { .string($0.shortHash) } ?? .null,
            "error": record.error.map { .string($0) } ?? .null,
            "registeredTime": .string(record.registeredTime.ISO8601Format()),
            "lastModificationTime": .string(record.lastModificationTime.ISO8601Format()),
        ]
    }
}

import Appliance
import Foundation
import Hummingbird
import SDBoxCore
import Scheduler

/// Remote workers for admins, at run time: `GET /admin/workers/remote` (credentials masked),
/// `POST /admin/workers/remote {name, url, gpuMemoryMiB?, models?, headers?, basicAuth?, switchModels?}`
/// (adds one, or replaces the one added under that name) and `DELETE /admin/workers/remote/{name}`. Those
/// of the configuration file are listed but changed only there.
struct RemoteWorkerRoutes {
    let scheduler: Scheduler

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/admin/workers/remote") { _, _ in
            try Response.json(["remoteWorkers": await scheduler.remoteWorkerSettings().map(RemoteWorkerView.init)])
        }
        router.post("/admin/workers/remote") { request, _ in
            let settings = try Self.settings(try await request.jsonObject(limit: 1 << 16))
            do {
                try await scheduler.addRemoteWorker(settings)
            } catch let error as RemoteWorkerError {
                throw Self.apiError(error)
            }
            return try Response.json(RemoteWorkerView((settings.masked, false)), status: .created)
        }
        router.delete("/admin/workers/remote/:name") { _, context in
            let name = try context.parameters.require("name")
            do {
                try await scheduler.removeRemoteWorker(named: name)
            } catch let error as RemoteWorkerError {
                throw Self.apiError(error)
            }
            return try Response.json(["message": "success"])
        }
    }

    /// A remote worker as listed: its settings (credentials masked) and where they come from.
    struct RemoteWorkerView: Encodable {
        let settings: RemoteWorkerSettings
        let configured: Bool

        init(_ entry: (settings: RemoteWorkerSettings, configured: Bool)) {
            (settings, configured) = entry
        }

        func encode(to encoder: any Encoder) throws {
            try settings.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(configured ? "configuration" : "runtime", forKey: .source)
        }

        enum Keys: String, CodingKey { case source }
    }

    static func apiError(_ error: RemoteWorkerError) -> APIError {
        switch error {
        case .invalid(let problem): APIError(.badRequest, "invalid remote worker", detail: problem)
        case .configured: APIError(.conflict, "remote worker in the configuration", detail: error.description)
        case .notFound: APIError(.notFound, "remote worker not found", detail: error.description)
        }
    }

    /// Reads a remote worker's settings from a request body, refusing unknown fields and wrong types.
    static func settings(_ body: [String: JSONValue]) throws -> RemoteWorkerSettings {
        let known: Set<String> = ["name", "url", "gpuMemoryMiB", "models", "headers", "basicAuth", "maxTasks", "switchModels"]
        func invalid(_ field: String, _ what: String) -> APIError {
            APIError(.badRequest, "invalid request", detail: "field '\(field)' must be \(what)", extra: ["field": .string(field)])
        }
        if let unknown = body.keys.sorted().first(where: { !known.contains($0) }) { throw invalid(unknown, "one of \(known.sorted().joined(separator: ", "))") }
        func string(_ field: String) throws -> String? {
            guard let value = body[field], !value.isNull else { return nil }
            guard let text = value.stringValue else { throw invalid(field, "a string") }
            return text
        }
        guard let name = try string("name"), !name.isEmpty, name.count <= 64 else { throw invalid("name", "a name of 1 to 64 characters") }
        guard let url = try string("url") else { throw invalid("url", "an http:// or https:// URL") }
        var memory: Int?
        if let value = body["gpuMemoryMiB"], !value.isNull {
            guard let number = value.integerValue, (0...(1 << 24)).contains(number) else { throw invalid("gpuMemoryMiB", "an integer from 0 to 16777216") }
            memory = Int(number)
        }
        var models: [String]?
        if let value = body["models"], !value.isNull {
            guard let items = value.arrayValue?.compactMap(\.stringValue), items.count == value.arrayValue?.count else { throw invalid("models", "an array of model names") }
            models = items
        }
        var headers: [String: String] = [:]
        if let value = body["headers"], !value.isNull {
            guard let object = value.objectValue, object.values.allSatisfy({ $0.stringValue != nil }) else { throw invalid("headers", "an object of strings") }
            headers = object.compactMapValues(\.stringValue)
        }
        var maxTasks: Int?
        if let value = body["maxTasks"], !value.isNull {
            guard let number = value.integerValue, (1...16).contains(number) else { throw invalid("maxTasks", "an integer from 1 to 16") }
            maxTasks = Int(number)
        }
        var switchModels = false
        if let value = body["switchModels"], !value.isNull {
            guard case .bool(let flag) = value else { throw invalid("switchModels", "true or false") }
            switchModels = flag
        }
        return RemoteWorkerSettings(
            name: name, url: url, gpuMemoryMiB: memory, models: models, headers: headers, basicAuth: try string("basicAuth"), maxTasks: maxTasks,
            switchModels: switchModels
        )
    }
}

import Appliance
import Foundation
import Hummingbird
import SDBoxCore

/// Installs from links for admins: `POST /admin/models/install {url, type?, name?, sha256?, revision?,
/// overwrite?}` (202, the install), `GET /admin/models/installs` (newest first) and `/{id}`, and
/// `DELETE /admin/models/installs/{id}` (cancels an unfinished install, or forgets a finished one).
struct ModelInstallRoutes {
    let installer: ModelInstaller

    func register(on router: Router<SDBoxRequestContext>) {
        router.post("/admin/models/install") { request, _ in
            let body = try await request.jsonObject(limit: 1 << 16)
            guard let url = body["url"]?.stringValue, !url.isEmpty else {
                throw APIError(.badRequest, "invalid request", detail: "field 'url' must be a link to a model file", extra: ["field": "url"])
            }
            let type = try body["type"].flatMap { $0.isNull ? nil : $0 }.map { value in
                guard let text = value.stringValue else {
                    throw APIError(.badRequest, "invalid request", detail: "field 'type' must be a model type", extra: ["field": "type"])
                }
                return try AdminModelRoutes.modelType(text)
            }
            let install = try await installer.start(
                link: url, type: type, name: try Self.optionalString(body, "name"), sha256: try Self.optionalString(body, "sha256"),
                revision: try Self.optionalString(body, "revision"), overwrite: body["overwrite"]?.boolValue ?? false
            )
            return try Response.json(InstallView(install), status: .accepted)
        }
        router.get("/admin/models/installs") { _, _ in
            try Response.json(["installs": await installer.list().map(InstallView.init)])
        }
        router.get("/admin/models/installs/:id") { _, context in
            let id = try context.parameters.require("id")
            guard let install = await installer.install(id) else {
                throw APIError(.notFound, "install not found", detail: "no model install with id '\(id)'")
            }
            return try Response.json(InstallView(install))
        }
        router.delete("/admin/models/installs/:id") { _, context in
            try Response.json(InstallView(try await installer.cancel(try context.parameters.require("id"))))
        }
    }

    static func optionalString(_ body: [String: JSONValue], _ field: String) throws -> String? {
        guard let value = body[field], !value.isNull else { return nil }
        guard let text = value.stringValue, !text.isEmpty else {
            throw APIError(.badRequest, "invalid request", detail: "field '\(field)' must be a non-empty string", extra: ["field": .string(field)])
        }
        return text
    }

    /// An install as listed: the record, with its progress as a fraction and the time left.
    struct InstallView: Encodable {
        let id: String
        let url: String
        let site: String
        let revision: String?
        let type: ModelType
        let name: String
        let sha256: String?
        let downloadURL: String?
        let state: ModelInstall.State
        let receivedBytes: Int64
        let totalBytes: Int64?
        let progress: Double?
        let bytesPerSecond: Double?
        let secondsLeft: Double?
        let attempts: Int
        let error: String?
        let createdAt: String
        let finishedAt: String?

        init(_ install: ModelInstall) {
            id = install.id
            url = install.link
            site = install.site
            revision = install.revision
            type = install.type
            name = install.name
            sha256 = install.sha256
            downloadURL = install.downloadURL
            state = install.state
            receivedBytes = install.receivedBytes
            totalBytes = install.totalBytes
            progress = install.totalBytes.flatMap { $0 > 0 ? min(1, Double(install.receivedBytes) / Double($0)) : nil }
            bytesPerSecond = install.bytesPerSecond
            secondsLeft = install.secondsLeft
            attempts = install.attempts
            error = install.error
            createdAt = install.createdAt.ISO8601Format()
            finishedAt = install.finishedAt?.ISO8601Format()
        }
    }
}

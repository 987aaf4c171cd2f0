import Appliance
import Foundation
import Hummingbird
import SDBoxCore
import Storage

/// Quotas for admins: `GET /admin/quotas` (each with what its subject used today and this month),
/// `PUT /admin/quotas/user/{name}` and `/admin/quotas/key/{id}` with `{imagesPerDay, imagesPerMonth,
/// workerSecondsPerDay, workerSecondsPerMonth}` (any may be absent or null: no limit), and `DELETE` of
/// the same paths.
struct QuotaRoutes {
    let quotas: QuotaGuard
    let keys: any KeyStore

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/admin/quotas") { _, _ in
            try Response.json(["quotas": quotas.statuses()])
        }
        router.put("/admin/quotas/user/:name") { request, context in
            try await set(.user(try userName(in: context)), request)
        }
        router.put("/admin/quotas/key/:id") { request, context in
            try await set(.key(try await keyID(in: context)), request)
        }
        router.delete("/admin/quotas/user/:name") { _, context in
            try await remove(.user(try userName(in: context)))
        }
        router.delete("/admin/quotas/key/:id") { _, context in
            try await remove(.key(try await keyID(in: context)))
        }
    }

    /// The user a path names; 400 when the name cannot be a user's.
    func userName(in context: SDBoxRequestContext) throws -> String {
        let name = try context.parameters.require("name")
        if let problem = APIKeyRecord.problem(withUserName: name) {
            throw APIError(.badRequest, "invalid user", detail: problem, extra: ["field": "name"])
        }
        return name
    }

    /// The API key a path names by id; 404 when there is no such key.
    func keyID(in context: SDBoxRequestContext) async throws -> String {
        let id = try context.parameters.require("id")
        guard TaskID.isWellFormed(id), try await keys.list().contains(where: { $0.id == id }) else {
            throw APIError(.notFound, "key not found", detail: "no API key with id '\(id)'")
        }
        return id
    }

    func set(_ subject: QuotaSubject, _ request: Request) async throws -> Response {
        let quota: Quota
        do {
            quota = try Quota(parsing: try await request.jsonObject(limit: 1 << 16))
        } catch let error as RequestValidationError {
            throw APIError.badRequest(error)
        }
        try await quotas.set(quota, for: subject)
        return try Response.json(quotas.status(of: subject))
    }

    func remove(_ subject: QuotaSubject) async throws -> Response {
        guard try await quotas.remove(subject) else {
            throw APIError(.notFound, "quota not found", detail: "no quota is set on \(subject.type) '\(subject.name)'")
        }
        return try Response.json(["message": "deleted", "type": subject.type, "name": subject.name])
    }
}

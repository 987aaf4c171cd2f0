import Appliance
import Foundation
import Hummingbird
import SDBoxCore
import Storage

/// API keys for admins: `GET /admin/keys`, `POST /admin/keys {user, role}` (the key is in the answer,
/// shown this once) and `DELETE /admin/keys/{id}`.
struct KeyRoutes {
    let keys: any KeyStore

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/admin/keys") { _, _ in
            try Response.json(["keys": try await keys.list().map(KeyView.init)])
        }
        router.post("/admin/keys") { request, _ in
            let body = try await request.jsonObject(limit: 1 << 16)
            let user = body["user"]?.stringValue ?? ""
            if let problem = APIKeyRecord.problem(withUserName: user) {
                throw APIError(.badRequest, "invalid user", detail: problem, extra: ["field": "user"])
            }
            guard let role = Role(rawValue: body["role"]?.stringValue ?? Role.user.rawValue) else {
                throw APIError(.badRequest, "invalid role", detail: "field 'role' must be 'admin' or 'user'", extra: ["field": "role"])
            }
            let (record, key) = APIKeyRecord.make(user: user, role: role)
            try await keys.insert(record)
            var answer = KeyView(record)
            answer.key = key
            return try Response.json(answer, status: .created)
        }
        router.delete("/admin/keys/:id") { _, context in
            let id = try context.parameters.require("id")
            guard TaskID.isWellFormed(id), let revoked = try await keys.revoke(id) else {
                throw APIError(.notFound, "key not found", detail: "no API key with id '\(id)'")
            }
            return try Response.json(KeyView(revoked))
        }
    }
}

/// An API key as listed: never its secret, which only the answer that made it carries (`key`).
struct KeyView: Encodable {
    let id: String
    let user: String
    let role: Role
    let createdAt: String
    @ExplicitNull var revokedAt: String?
    var key: String?

    init(_ record: APIKeyRecord) {
        id = record.id
        user = record.user
        role = record.role
        createdAt = record.createdAt.ISO8601Format()
        revokedAt = record.revokedAt?.ISO8601Format()
    }
}

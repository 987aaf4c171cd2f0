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
            Response.json(["keys": .array(try await keys.list().map(Self.view))])
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
            var answer = Self.view(record)
            answer["key"] = .string(key)
            return Response.json(answer, status: .created)
        }
        router.delete("/admin/keys/:id") { _, context in
            let id = try context.parameters.require("id")
            guard TaskID.isWellFormed(id), let revoked = try await keys.revoke(id) else {
                throw APIError(.notFound, "key not found", detail: "no API key with id '\(id)'")
            }
            return Response.json(Self.view(revoked))
        }
    }

    /// A key as listed: never its secret.
    static func view(_ key: APIKeyRecord) -> JSONValue {
        [
            "id": .string(key.id), "user": .string(key.user), "role": .string(key.role.rawValue),
            "createdAt": .string(key.createdAt.ISO8601Format()),
            "revokedAt": key.revokedAt.map { .string($0.ISO8601Format()) } ?? .null,
        ]
    }
}

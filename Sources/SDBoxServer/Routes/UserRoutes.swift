import Appliance
import Foundation
import Hummingbird
import SDBoxCore
import Storage

/// Signing in with a password, as the original: `POST /login {userName, password}` →
/// `{token, userName, message}` (the token goes in the `Token` header, or as a bearer key); and for admins
/// `GET /admin/users`, `POST /admin/users {userName, password, role}` (adds a user or sets its password
/// and role) and `DELETE /admin/users/{name}` (ends its sessions too).
struct UserRoutes {
    let accounts: UserAccounts

    func register(on router: Router<SDBoxRequestContext>) {
        router.post("/login") { request, context in
            // The original's client sends `UserName` and `Password`; its server reads keys in any case.
            let body = try await request.jsonObject(limit: 1 << 16)
            func field(_ name: String) -> String? {
                body.first { $0.key.lowercased() == name.lowercased() }?.value.stringValue
            }
            guard let name = field("userName"), let password = field("password") else {
                throw APIError(.badRequest, "invalid request", detail: "bad request body: userName and password are required", extra: ["field": "userName"])
            }
            guard let (user, token) = try await accounts.signIn(name: name, password: password, from: context.remoteAddress) else {
                throw APIError(.unauthorized, "login failed", detail: "login fail: wrong user name or password")
            }
            return try Response.json(["token": token, "userName": user.name, "message": "login success"])
        }
        router.get("/admin/users") { _, _ in
            try Response.json(try await accounts.store.users().map(UserView.init))
        }
        router.post("/admin/users") { request, _ in
            let body = try await request.jsonObject(limit: 1 << 16)
            guard let name = body["userName"]?.stringValue, let password = body["password"]?.stringValue else {
                throw APIError(.badRequest, "invalid request", detail: "userName and password are required", extra: ["field": "userName"])
            }
            guard let role = Role(rawValue: body["role"]?.stringValue ?? Role.user.rawValue) else {
                throw APIError(.badRequest, "invalid role", detail: "field 'role' must be 'admin' or 'user'", extra: ["field": "role"])
            }
            return try Response.json(UserView(try await accounts.save(name: name, role: role, password: password)), status: .created)
        }
        router.delete("/admin/users/:name") { _, context in
            let name = try context.parameters.require("name")
            guard try await accounts.store.removeUser(named: name) else {
                throw APIError(.notFound, "user not found", detail: "no user named '\(name)'")
            }
            return try Response.json(["message": "deleted", "userName": name])
        }
    }
}

/// A user as listed: never its password hash.
struct UserView: Encodable {
    let userName: String
    let role: Role
    let createdAt: String

    init(_ user: UserRecord) {
        userName = user.name
        role = user.role
        createdAt = user.createdAt.ISO8601Format()
    }
}

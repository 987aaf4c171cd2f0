import Foundation
import HTTPTypes
import HummingbirdBcrypt
import NIOPosix
import SDBoxCore
import Storage

/// Users who sign in with a name and password, and the sessions `POST /login` gives them (the original's
/// login): passwords are hashed with bcrypt (cost 12) on the thread pool, never on an event loop, and an
/// unknown name costs the same check as a wrong password, so that timing does not tell which names exist.
/// A session's token works in the original's `token` header and as a bearer key until it has gone unused
/// for `auth.sessionSeconds`.
public struct UserAccounts: Sendable {
    package let store: any UserStore
    let sessionSeconds: Int
    let threadPool: NIOThreadPool
    /// Slows password guessing (see ``LoginThrottle``).
    let throttle = LoginThrottle()

    static let cost: UInt8 = 12
    /// Shortest password taken.
    package static let minimumPasswordLength = 8
    /// What an unknown name's password is checked against.
    static let unknownUserHash = Bcrypt.hash("sdbox: no such user", cost: cost)

    public init(store: any UserStore, sessionSeconds: Int, threadPool: NIOThreadPool = .singleton) {
        self.store = store
        self.sessionSeconds = sessionSeconds
        self.threadPool = threadPool
    }

    /// Adds a user, or gives an existing one a new password and role.
    @discardableResult
    package func save(name: String, role: Role, password: String) async throws -> UserRecord {
        if let problem = APIKeyRecord.problem(withUserName: name) {
            throw APIError(.badRequest, "invalid user", detail: problem, extra: ["field": "userName"])
        }
        guard password.count >= Self.minimumPasswordLength else {
            throw APIError(.badRequest, "invalid password", detail: "a password has at least \(Self.minimumPasswordLength) characters", extra: ["field": "password"])
        }
        let hash = try await threadPool.runIfActive { Bcrypt.hash(password, cost: Self.cost) }
        let created = try await store.user(named: name)?.createdAt ?? Date()
        let user = UserRecord(name: name, role: role, passwordHash: hash, createdAt: created)
        try await store.save(user)
        return user
    }

    /// Signs a user in: a new session's token, or nil when the name or password is wrong; 429 while
    /// `name` from `address` has failed too often (``LoginThrottle``).
    package func signIn(name: String, password: String, from address: String? = nil) async throws -> (user: UserRecord, token: String)? {
        try throttle.check(name: name, address: address)
        let user = try await store.user(named: name)
        let hash = user?.passwordHash ?? Self.unknownUserHash
        let matches = try await threadPool.runIfActive { Bcrypt.verify(password, hash: hash) }
        guard let user, matches else {
            throttle.failed(name: name, address: address)
            return nil
        }
        throttle.succeeded(name: name, address: address)
        let (session, token) = SessionRecord.make(for: user)
        try await store.insert(session)
        return (user, token)
    }

    /// The live session of a token, renewed by this use; nil for an unknown or expired one.
    package func session(token: String) async throws -> SessionRecord? {
        try await store.useSession(tokenHash: SessionRecord.hash(token), now: Date(), lifetime: TimeInterval(sessionSeconds))
    }
}

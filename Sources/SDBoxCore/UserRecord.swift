import Crypto
import Foundation

/// A user who signs in with a name and password (the original's `POST /login`): the role it acts with and
/// the bcrypt hash of its password (never the password).
public struct UserRecord: Codable, Sendable, Equatable {
    public var name: String
    public var role: Role
    public var passwordHash: String
    public var createdAt: Date

    public init(name: String, role: Role, passwordHash: String, createdAt: Date = Date()) {
        self.name = name
        self.role = role
        self.passwordHash = passwordHash
        self.createdAt = createdAt
    }
}

/// A signed-in session: the sha256 of its token (the token itself is given once, at sign-in), whose it
/// is, and when it was last used (it expires `auth.sessionSeconds` after that).
public struct SessionRecord: Codable, Sendable, Equatable {
    public var tokenHash: String
    public var user: String
    public var role: Role
    public var createdAt: Date
    public var lastUsed: Date

    /// Makes a session for `user`; returns the record to store and the token to give the client once:
    /// 64 base-62 characters of randomness (about 380 bits), as the original's tokens are 64 characters.
    public static func make(for user: UserRecord, now: Date = Date()) -> (record: SessionRecord, token: String) {
        let token = (0..<5).map { _ in TaskID.make() }.joined() + String(TaskID.make().prefix(4))
        return (SessionRecord(tokenHash: hash(token), user: user.name, role: user.role, createdAt: now, lastUsed: now), token)
    }

    /// The key a token is stored under.
    public static func hash(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).hexString
    }
}

import Foundation
import SDBoxCore

/// Users who sign in with a password, and their sessions. ``LMDBUserStore`` is the embedded one.
public protocol UserStore: Sendable {
    /// Stores a user, replacing one of the same name (a new password or role).
    func save(_ user: UserRecord) async throws
    /// The user `name`, if there is one.
    func user(named name: String) async throws -> UserRecord?
    /// Every user, by name.
    func users() async throws -> [UserRecord]
    /// Removes a user and ends its sessions; false if there was none.
    func removeUser(named name: String) async throws -> Bool
    /// Stores a new session.
    func insert(_ session: SessionRecord) async throws
    /// The session of a token's hash that was used within `lifetime` of `now`, marked used at `now`; an
    /// expired one is removed and nil returned.
    func useSession(tokenHash: String, now: Date, lifetime: TimeInterval) async throws -> SessionRecord?
}

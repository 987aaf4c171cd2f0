import Foundation
import SDBoxCore

/// Users and sessions in LMDB: users by name, sessions by the sha256 of their token.
///
/// A session's last use is written at most once a minute, or four times a lifetime when that is shorter
/// (a request with a token then costs a read, not a write); expiry is judged on that time, so a session
/// may outlive its last use by up to a quarter of its lifetime more.
public final class LMDBUserStore: UserStore {
    let database: Database
    /// How stale a session's stored last use may be before a use writes it again.
    static let touchInterval: TimeInterval = 60

    public init(database: Database) {
        self.database = database
    }

    public func save(_ user: UserRecord) async throws {
        _ = try await database.write { txn, tables in
            _ = try txn.put(tables.users, key: user.name, value: RecordCoding.encode(user))
        }
    }

    public func user(named name: String) async throws -> UserRecord? {
        guard Self.isStorable(name) else { return nil }
        return try await database.read { txn, tables in try txn.record(UserRecord.self, in: tables.users, key: name) }
    }

    public func users() async throws -> [UserRecord] {
        try await database.read { txn, tables in try txn.records(UserRecord.self, in: tables.users) }.sorted { $0.name < $1.name }
    }

    public func removeUser(named name: String) async throws -> Bool {
        guard Self.isStorable(name) else { return false }
        return try await database.write { txn, tables in
            guard try txn.get(tables.users, key: name) != nil else { return false }
            _ = try txn.delete(tables.users, key: name)
            for session in try txn.records(SessionRecord.self, in: tables.sessions) where session.user == name {
                _ = try txn.delete(tables.sessions, key: session.tokenHash)
            }
            return true
        }
    }

    /// Whether a name can be a key of the users table (LMDB takes 1 to 511 bytes); no user has another.
    static func isStorable(_ name: String) -> Bool {
        (1...511).contains(name.utf8.count)
    }

    public func insert(_ session: SessionRecord) async throws {
        _ = try await database.write { txn, tables in
            _ = try txn.put(tables.sessions, key: session.tokenHash, value: RecordCoding.encode(session), overwrite: false)
        }
    }

    public func useSession(tokenHash: String, now: Date, lifetime: TimeInterval) async throws -> SessionRecord? {
        guard let session = try await database.read({ txn, tables in try txn.record(SessionRecord.self, in: tables.sessions, key: tokenHash) }) else {
            return nil
        }
        let age = now.timeIntervalSince(session.lastUsed)
        if age > lifetime {
            _ = try await database.write { txn, tables in _ = try txn.delete(tables.sessions, key: tokenHash) }
            return nil
        }
        guard age >= min(Self.touchInterval, lifetime / 4) else { return session }
        var used = session
        used.lastUsed = now
        let stored = used
        _ = try await database.write { txn, tables in
            // The user may have been removed meanwhile: its sessions are gone, and this one stays gone.
            guard try txn.get(tables.sessions, key: tokenHash) != nil else { return }
            _ = try txn.put(tables.sessions, key: tokenHash, value: RecordCoding.encode(stored))
        }
        return used
    }
}

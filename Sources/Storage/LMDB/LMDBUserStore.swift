import Foundation
import SDBoxCore

/// Users and sessions in LMDB: users by name, sessions by the sha256 of their token. A use of a session
/// writes its last use only now and then (``SessionUse``).
public final class LMDBUserStore: UserStore {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    public func save(_ user: UserRecord) async throws {
        _ = try await database.write { txn, tables in
            _ = try txn.put(tables.users, key: user.name, value: RecordCoding.encode(user))
        }
    }

    public func user(named name: String) async throws -> UserRecord? {
        guard UserNames.isStorable(name) else { return nil }
        return try await database.read { txn, tables in try txn.record(UserRecord.self, in: tables.users, key: name) }
    }

    public func users() async throws -> [UserRecord] {
        try await database.read { txn, tables in try txn.records(UserRecord.self, in: tables.users) }.sorted { $0.name < $1.name }
    }

    public func removeUser(named name: String) async throws -> Bool {
        guard UserNames.isStorable(name) else { return false }
        return try await database.write { txn, tables in
            guard try txn.get(tables.users, key: name) != nil else { return false }
            _ = try txn.delete(tables.users, key: name)
            for session in try txn.records(SessionRecord.self, in: tables.sessions) where session.user == name {
                _ = try txn.delete(tables.sessions, key: session.tokenHash)
            }
            return true
        }
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
        switch SessionUse(of: session, now: now, lifetime: lifetime) {
        case .expired:
            _ = try await database.write { txn, tables in _ = try txn.delete(tables.sessions, key: tokenHash) }
            return nil
        case .current(let session):
            return session
        case .renewed(let used):
            _ = try await database.write { txn, tables in
                // The user may have been removed meanwhile: its sessions are gone, and this one stays gone.
                guard try txn.get(tables.sessions, key: tokenHash) != nil else { return }
                _ = try txn.put(tables.sessions, key: tokenHash, value: RecordCoding.encode(used))
            }
            return used
        }
    }
}

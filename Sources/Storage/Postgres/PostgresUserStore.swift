import Foundation
import PostgresNIO
import SDBoxCore

/// The ``UserStore`` in PostgreSQL: users by name (`sdbox_users`), sessions by the sha256 of their token
/// (`sdbox_sessions`). A use of a session writes its last use only now and then (``SessionUse``).
public struct PostgresUserStore: UserStore {
    let database: PostgresDatabase

    public init(database: PostgresDatabase) {
        self.database = database
    }

    public func save(_ user: UserRecord) async throws {
        try await database.query("""
            INSERT INTO sdbox_users (name, record) VALUES (\(user.name), \(try RecordCoding.text(user))::jsonb)
            ON CONFLICT (name) DO UPDATE SET record = excluded.record
            """)
    }

    public func user(named name: String) async throws -> UserRecord? {
        guard UserNames.isStorable(name) else { return nil }
        return try await database.query("SELECT record::text FROM sdbox_users WHERE name = \(name)").record(UserRecord.self)
    }

    public func users() async throws -> [UserRecord] {
        try await database.query("SELECT record::text FROM sdbox_users ORDER BY name").records(UserRecord.self)
    }

    public func removeUser(named name: String) async throws -> Bool {
        guard UserNames.isStorable(name) else { return false }
        return try await database.transaction { connection in
            let removed = try await connection.query("DELETE FROM sdbox_users WHERE name = \(name) RETURNING name", logger: database.logger)
            var found = false
            for try await _ in removed.decode(String.self) { found = true }
            guard found else { return false }
            try await connection.query("DELETE FROM sdbox_sessions WHERE user_name = \(name)", logger: database.logger)
            return true
        }
    }

    public func insert(_ session: SessionRecord) async throws {
        try await database.query("""
            INSERT INTO sdbox_sessions (token_hash, user_name, record) VALUES (\(session.tokenHash), \(session.user), \(try RecordCoding.text(session))::jsonb)
            ON CONFLICT (token_hash) DO NOTHING
            """)
    }

    public func useSession(tokenHash: String, now: Date, lifetime: TimeInterval) async throws -> SessionRecord? {
        guard let session = try await database.query("SELECT record::text FROM sdbox_sessions WHERE token_hash = \(tokenHash)")
            .record(SessionRecord.self)
        else { return nil }
        switch SessionUse(of: session, now: now, lifetime: lifetime) {
        case .expired:
            try await database.query("DELETE FROM sdbox_sessions WHERE token_hash = \(tokenHash)")
            return nil
        case .current(let session):
            return session
        case .renewed(let used):
            // An UPDATE, not an upsert: a session removed meanwhile (its user removed) stays gone.
            try await database.query("UPDATE sdbox_sessions SET record = \(try RecordCoding.text(used))::jsonb WHERE token_hash = \(tokenHash)")
            return used
        }
    }
}

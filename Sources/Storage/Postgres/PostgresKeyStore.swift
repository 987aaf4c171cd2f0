import Foundation
import PostgresNIO
import SDBoxCore

/// The ``KeyStore`` in PostgreSQL (`sdbox_api_keys`): keys by id with the hash of their secret. As in
/// LMDB, a key that checked out is remembered for `recheckInterval` (``CheckedKeys``): one revoked on
/// another box stops working here within that time, one revoked through this store at once.
public final class PostgresKeyStore: KeyStore {
    let database: PostgresDatabase
    private let checked: CheckedKeys

    public init(database: PostgresDatabase, recheckInterval: Duration = .seconds(5)) {
        self.database = database
        self.checked = CheckedKeys(recheckInterval: recheckInterval)
    }

    public func insert(_ key: APIKeyRecord) async throws {
        try await database.query("""
            INSERT INTO sdbox_api_keys (id, created_at, record) VALUES (\(key.id), \(key.createdAt), \(try RecordCoding.text(key))::jsonb)
            ON CONFLICT (id) DO NOTHING
            """)
    }

    /// The key a request presented (`sdbox_<id>_<secret>`), if it is known, not revoked, and its secret matches.
    public func authenticate(_ presented: String, now: ContinuousClock.Instant = .now) async throws -> APIKeyRecord? {
        try await checked.authenticate(presented, now: now) { id in
            try await database.query("SELECT record::text FROM sdbox_api_keys WHERE id = \(id)").record(APIKeyRecord.self)
        }
    }

    /// Every key, revoked ones included, oldest first.
    public func list() async throws -> [APIKeyRecord] {
        try await database.query("SELECT record::text FROM sdbox_api_keys ORDER BY created_at, id").records(APIKeyRecord.self)
    }

    /// Marks a key revoked; returns it, or nil if there is no such key.
    public func revoke(_ id: String, at now: Date = Date()) async throws -> APIKeyRecord? {
        let logger = database.logger
        let revoked: APIKeyRecord? = try await database.transaction { connection in
            guard var key = try await connection.query("SELECT record::text FROM sdbox_api_keys WHERE id = \(id) FOR UPDATE", logger: logger)
                .record(APIKeyRecord.self)
            else { return nil }
            if key.revokedAt == nil { key.revokedAt = now }
            try await connection.query("UPDATE sdbox_api_keys SET record = \(try RecordCoding.text(key))::jsonb WHERE id = \(id)", logger: logger)
            return key
        }
        checked.revoked(id)
        return revoked
    }
}

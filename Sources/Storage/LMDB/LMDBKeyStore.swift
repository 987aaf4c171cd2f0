import Foundation
import SDBoxCore

/// Persistent API keys: stored by id with the hash of their secret, checked, listed, and revoked.
///
/// A key that checked out is remembered for `recheckInterval` (``CheckedKeys``), so a request with a key
/// costs no transaction and no hashing. A key revoked through this store stops working at once; one
/// revoked by another process (`sdbox keys revoke` beside a running server) within `recheckInterval`.
public final class LMDBKeyStore: KeyStore {
    let database: Database
    private let checked: CheckedKeys

    public init(database: Database, recheckInterval: Duration = .seconds(5)) {
        self.database = database
        self.checked = CheckedKeys(recheckInterval: recheckInterval)
    }

    public func insert(_ key: APIKeyRecord) async throws {
        _ = try await database.write { txn, tables in
            try txn.put(tables.keys, key: key.id, value: RecordCoding.encode(key), overwrite: false)
        }
    }

    /// The key a request presented (`sdbox_<id>_<secret>`), if it is known, not revoked, and its secret matches.
    public func authenticate(_ presented: String, now: ContinuousClock.Instant = .now) async throws -> APIKeyRecord? {
        try await checked.authenticate(presented, now: now) { id in
            try await database.read { txn, tables in try txn.record(APIKeyRecord.self, in: tables.keys, key: id) }
        }
    }

    /// Every key, revoked ones included, oldest first.
    public func list() async throws -> [APIKeyRecord] {
        try await database.read { txn, tables in try txn.records(APIKeyRecord.self, in: tables.keys) }
            .sorted { $0.createdAt < $1.createdAt }
    }

    /// Marks a key revoked; returns it, or nil if there is no such key.
    public func revoke(_ id: String, at now: Date = Date()) async throws -> APIKeyRecord? {
        let revoked: APIKeyRecord? = try await database.write { txn, tables in
            guard var key = try txn.record(APIKeyRecord.self, in: tables.keys, key: id) else { return nil }
            if key.revokedAt == nil { key.revokedAt = now }
            _ = try txn.put(tables.keys, key: id, value: RecordCoding.encode(key))
            return key
        }
        checked.revoked(id)
        return revoked
    }
}

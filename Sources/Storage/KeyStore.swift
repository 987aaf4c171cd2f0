import Foundation
import SDBoxCore

/// Persistent API keys: stored by id with the hash of their secret, listed, and revoked.
public struct KeyStore: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    public func insert(_ key: APIKeyRecord) async throws {
        _ = try await database.write { txn, tables in
            try txn.put(tables.keys, key: key.id, value: RecordCoding.encode(key), overwrite: false)
        }
    }

    public func get(_ id: String) async throws -> APIKeyRecord? {
        try await database.read { txn, tables in try txn.record(APIKeyRecord.self, in: tables.keys, key: id) }
    }

    /// Every key, revoked ones included, oldest first.
    public func list() async throws -> [APIKeyRecord] {
        try await database.read { txn, tables in try txn.records(APIKeyRecord.self, in: tables.keys) }
            .sorted { $0.createdAt < $1.createdAt }
    }

    /// Marks a key revoked; returns it, or nil if there is no such key.
    public func revoke(_ id: String, at now: Date = Date()) async throws -> APIKeyRecord? {
        try await database.write { txn, tables in
            guard var key = try txn.record(APIKeyRecord.self, in: tables.keys, key: id) else { return nil }
            if key.revokedAt == nil { key.revokedAt = now }
            _ = try txn.put(tables.keys, key: id, value: RecordCoding.encode(key))
            return key
        }
    }
}

import Foundation
import SDBoxCore
import Synchronization

/// Persistent API keys: stored by id with the hash of their secret, checked, listed, and revoked.
///
/// A key that checked out is remembered for `recheckInterval`, so a request with a key costs no
/// transaction and no hashing. A key revoked through this store stops working at once; one revoked by
/// another process (`sdbox keys revoke` beside a running server) within `recheckInterval`.
public final class LMDBKeyStore: KeyStore {
    let database: Database
    let recheckInterval: Duration
    private let checked = Mutex(Checked())

    private struct Checked {
        var keys: [String: (key: APIKeyRecord, until: ContinuousClock.Instant)] = [:]
        /// Counts revocations, so a check that raced one is not remembered.
        var revocations = 0
    }

    public init(database: Database, recheckInterval: Duration = .seconds(5)) {
        self.database = database
        self.recheckInterval = recheckInterval
    }

    public func insert(_ key: APIKeyRecord) async throws {
        _ = try await database.write { txn, tables in
            try txn.put(tables.keys, key: key.id, value: RecordCoding.encode(key), overwrite: false)
        }
    }

    /// The key a request presented (`sdbox_<id>_<secret>`), if it is known, not revoked, and its secret matches.
    public func authenticate(_ presented: String, now: ContinuousClock.Instant = .now) async throws -> APIKeyRecord? {
        let (remembered, revocations) = checked.withLock { ($0.keys[presented], $0.revocations) }
        if let remembered, now < remembered.until {
            return remembered.key
        }
        guard let (id, secret) = APIKeyRecord.parse(presented),
            let key = try await database.read({ txn, tables in try txn.record(APIKeyRecord.self, in: tables.keys, key: id) }),
            key.revokedAt == nil, key.accepts(secret: secret)
        else {
            checked.withLock { _ = $0.keys.removeValue(forKey: presented) }
            return nil
        }
        checked.withLock { checked in
            if checked.revocations == revocations { checked.keys[presented] = (key, now.advanced(by: recheckInterval)) }
        }
        return key
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
        checked.withLock { checked in
            checked.keys = checked.keys.filter { $0.value.key.id != id }
            checked.revocations += 1
        }
        return revoked
    }
}

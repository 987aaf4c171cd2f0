import Foundation
import SDBoxCore

/// API keys, stored hashed: made, checked, listed and revoked. ``LMDBKeyStore`` is the embedded one.
public protocol KeyStore: Sendable {
    /// Stores a new key.
    func insert(_ key: APIKeyRecord) async throws
    /// The key a presented secret belongs to, if it is known and not revoked.
    func authenticate(_ presented: String, now: ContinuousClock.Instant) async throws -> APIKeyRecord?
    /// Every key, revoked ones too (never their secrets).
    func list() async throws -> [APIKeyRecord]
    /// Revokes key `id`; nil if there is none.
    func revoke(_ id: String, at now: Date) async throws -> APIKeyRecord?
}

extension KeyStore {
    public func authenticate(_ presented: String) async throws -> APIKeyRecord? {
        try await authenticate(presented, now: .now)
    }

    public func revoke(_ id: String) async throws -> APIKeyRecord? {
        try await revoke(id, at: Date())
    }
}

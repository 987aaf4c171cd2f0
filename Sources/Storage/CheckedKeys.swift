import SDBoxCore
import Synchronization

/// The API keys that checked out lately, kept for a while so that a request with a key costs no read
/// and no hashing; every ``KeyStore`` keeps one. A key revoked through the same store is forgotten at
/// once; one revoked elsewhere (another process, another box) stops working within `recheckInterval`.
final class CheckedKeys: Sendable {
    private struct State {
        var keys: [String: (key: APIKeyRecord, until: ContinuousClock.Instant)] = [:]
        /// Counts revocations, so a check that raced one is not remembered.
        var revocations = 0
    }

    let recheckInterval: Duration
    private let state = Mutex(State())

    init(recheckInterval: Duration) {
        self.recheckInterval = recheckInterval
    }

    /// Authenticates `presented` (`sdbox_<id>_<secret>`) from memory, else with the record `read` gives
    /// for its id; nil when the key is unknown, revoked, or its secret does not match.
    func authenticate(
        _ presented: String, now: ContinuousClock.Instant, read: (String) async throws -> APIKeyRecord?
    ) async throws -> APIKeyRecord? {
        let (remembered, revocations) = state.withLock { ($0.keys[presented], $0.revocations) }
        if let remembered, now < remembered.until {
            return remembered.key
        }
        guard let (id, secret) = APIKeyRecord.parse(presented), let key = try await read(id), key.revokedAt == nil,
            key.accepts(secret: secret)
        else {
            state.withLock { _ = $0.keys.removeValue(forKey: presented) }
            return nil
        }
        state.withLock { state in
            if state.revocations == revocations { state.keys[presented] = (key, now.advanced(by: recheckInterval)) }
        }
        return key
    }

    /// Forgets key `id`, revoked through this store.
    func revoked(_ id: String) {
        state.withLock { state in
            state.keys = state.keys.filter { $0.value.key.id != id }
            state.revocations += 1
        }
    }
}

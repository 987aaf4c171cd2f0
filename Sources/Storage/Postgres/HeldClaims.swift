import Synchronization

/// The claims this box holds on tasks, each with its fencing number (`claim_epoch`): what
/// ``PostgresTaskClaims`` claimed, and what ``PostgresTaskStore`` checks before it writes a change of a
/// task this box claimed, so that a box whose claim expired and was taken over cannot finish the task too.
public final class HeldClaims: Sendable {
    private let epochs = Mutex<[String: Int64]>([:])

    public init() {}

    /// The fencing number of this box's claim on task `id`; nil when it holds none.
    public func epoch(of id: String) -> Int64? {
        epochs.withLock { $0[id] }
    }

    /// The tasks this box holds claims on.
    public var ids: [String] {
        epochs.withLock { Array($0.keys) }
    }

    func hold(_ id: String, epoch: Int64) {
        epochs.withLock { $0[id] = epoch }
    }

    func drop(_ id: String) {
        epochs.withLock { _ = $0.removeValue(forKey: id) }
    }
}

import SDBoxCore

/// Persistent models, per-model pools (the original's functions) and per-user settings.
/// ``LMDBCatalogStore`` is the embedded one.
public protocol CatalogStore: Sendable {
    /// Every model record.
    func models() async throws -> [ModelRecord]
    /// The record of model `name` of `type`, if there is one.
    func model(_ type: ModelType, named name: String) async throws -> ModelRecord?
    /// Writes a model record and, for a checkpoint, makes sure its pool record exists; a checkpoint's
    /// record marked `deleted` (the original's `DELETE /models/{name}` keeps it) takes its pool record away
    /// in the same write, so that no box of a fleet sees the one change without the other.
    func save(_ model: ModelRecord) async throws
    /// Removes a model record and its pool record.
    func removeModel(_ type: ModelType, named name: String) async throws
    /// Every pool record.
    func pools() async throws -> [PoolRecord]
    /// Changes a model's pool record, creating it first if it is missing, and returns it.
    func updatePool(model: String, _ change: @escaping @Sendable (inout PoolRecord) -> Void) async throws -> PoolRecord
    /// Makes sure a model has a pool record.
    func ensurePool(model: String) async throws
    /// Removes a model's pool record; false if there was none.
    @discardableResult
    func removePool(model: String) async throws -> Bool
    /// A user's A1111 options (`POST /sdapi/v1/options`).
    func options(forUser user: String) async throws -> [String: JSONValue]
    /// Merges `changes` into a user's options and returns them.
    func updateOptions(forUser user: String, _ changes: [String: JSONValue]) async throws -> [String: JSONValue]
    /// The remote workers added at run time (`POST /admin/workers/remote`), in the order they were added.
    func remoteWorkers() async throws -> [RemoteWorkerSettings]
    /// Replaces the remote workers added at run time.
    func saveRemoteWorkers(_ workers: [RemoteWorkerSettings]) async throws
    /// What an admin has paused; nothing when never set.
    func queuePause() async throws -> QueuePause
    /// Keeps what an admin has paused.
    func saveQueuePause(_ pause: QueuePause) async throws
    /// The installs from links, finished ones included, oldest first.
    func modelInstalls() async throws -> [ModelInstall]
    /// Replaces the installs from links.
    func saveModelInstalls(_ installs: [ModelInstall]) async throws
    /// Every quota an admin has set; none when never set.
    func quotas() async throws -> QuotaTable
    /// Changes the quotas in one transaction, counting the change in their `revision`, and returns them.
    func updateQuotas(_ change: @escaping @Sendable (inout QuotaTable) -> Void) async throws -> QuotaTable
}

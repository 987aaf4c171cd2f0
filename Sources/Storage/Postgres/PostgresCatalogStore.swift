import Foundation
import Logging
import PostgresNIO
import SDBoxCore

/// The ``CatalogStore`` in PostgreSQL: models (`sdbox_models`), pools by function name (`sdbox_pools`),
/// and the settings LMDB keeps under the same keys (`sdbox_settings`: `options/<user>`, `remoteWorkers`,
/// `queuePause`, `modelInstalls`, `quotas`). Nothing is cached: other boxes may change any of it.
public struct PostgresCatalogStore: CatalogStore {
    let database: PostgresDatabase

    public init(database: PostgresDatabase) {
        self.database = database
    }

    // MARK: Models

    public func models() async throws -> [ModelRecord] {
        try await database.query("SELECT record::text FROM sdbox_models ORDER BY type, name").records(ModelRecord.self)
    }

    public func model(_ type: ModelType, named name: String) async throws -> ModelRecord? {
        try await database.query("SELECT record::text FROM sdbox_models WHERE type = \(type.rawValue) AND name = \(name)")
            .record(ModelRecord.self)
    }

    /// Writes a model record and makes sure its pool record exists (or, for a record marked deleted, is gone).
    public func save(_ model: ModelRecord) async throws {
        let text = try RecordCoding.text(model)
        let pool = model.type == .stableDiffusion ? PoolRecord(model: model.name) : nil
        let poolText = try pool.map(RecordCoding.text)
        try await database.transaction { connection in
            try await connection.query("""
                INSERT INTO sdbox_models (type, name, record) VALUES (\(model.type.rawValue), \(model.name), \(text)::jsonb)
                ON CONFLICT (type, name) DO UPDATE SET record = excluded.record
                """, logger: database.logger)
            guard let pool, let poolText else { return }
            if model.status == .deleted {
                try await connection.query("DELETE FROM sdbox_pools WHERE name = \(pool.functionName)", logger: database.logger)
            } else {
                try await connection.query(
                    "INSERT INTO sdbox_pools (name, record) VALUES (\(pool.functionName), \(poolText)::jsonb) ON CONFLICT DO NOTHING",
                    logger: database.logger
                )
            }
        }
    }

    /// Removes a model record and its pool record.
    public func removeModel(_ type: ModelType, named name: String) async throws {
        try await database.transaction { connection in
            try await connection.query("DELETE FROM sdbox_models WHERE type = \(type.rawValue) AND name = \(name)", logger: database.logger)
            try await connection.query("DELETE FROM sdbox_pools WHERE name = \(PoolRecord.name(forModel: name))", logger: database.logger)
        }
    }

    // MARK: Pools (the original's "functions")

    public func pools() async throws -> [PoolRecord] {
        try await database.query("SELECT record::text FROM sdbox_pools ORDER BY name").records(PoolRecord.self)
    }

    /// Changes a model's pool record, creating it first if it is missing, and returns it.
    public func updatePool(model: String, _ change: @escaping @Sendable (inout PoolRecord) -> Void) async throws -> PoolRecord {
        try await database.transaction { connection in
            try await Self.change(
                in: .pools, key: PoolRecord.name(forModel: model), default: PoolRecord(model: model),
                on: connection, logger: database.logger, change
            )
        }
    }

    /// Makes sure a model has a pool record (a deleted pool comes back with default settings when its
    /// model is used again).
    public func ensurePool(model: String) async throws {
        let pool = PoolRecord(model: model)
        try await database.query(
            "INSERT INTO sdbox_pools (name, record) VALUES (\(pool.functionName), \(try RecordCoding.text(pool))::jsonb) ON CONFLICT DO NOTHING"
        )
    }

    /// Removes a model's pool record; false if there was none.
    @discardableResult
    public func removePool(model: String) async throws -> Bool {
        let rows = try await database.query("DELETE FROM sdbox_pools WHERE name = \(PoolRecord.name(forModel: model)) RETURNING name")
        for try await _ in rows.decode(String.self) { return true }
        return false
    }

    // MARK: Settings

    /// A user's A1111 options (`POST /sdapi/v1/options`), empty when never set.
    public func options(forUser user: String) async throws -> [String: JSONValue] {
        try await setting("options/\(user)", as: [String: JSONValue].self) ?? [:]
    }

    /// Merges `changes` into a user's options and returns the result.
    public func updateOptions(forUser user: String, _ changes: [String: JSONValue]) async throws -> [String: JSONValue] {
        try await updateSetting("options/\(user)", default: [String: JSONValue]()) { $0.merge(changes) { _, new in new } }
    }

    public func remoteWorkers() async throws -> [RemoteWorkerSettings] {
        try await setting("remoteWorkers", as: [RemoteWorkerSettings].self) ?? []
    }

    public func saveRemoteWorkers(_ workers: [RemoteWorkerSettings]) async throws {
        try await saveSetting("remoteWorkers", workers)
    }

    public func queuePause() async throws -> QueuePause {
        try await setting("queuePause", as: QueuePause.self) ?? QueuePause()
    }

    public func saveQueuePause(_ pause: QueuePause) async throws {
        try await saveSetting("queuePause", pause)
    }

    public func modelInstalls() async throws -> [ModelInstall] {
        try await setting("modelInstalls", as: [ModelInstall].self) ?? []
    }

    public func saveModelInstalls(_ installs: [ModelInstall]) async throws {
        try await saveSetting("modelInstalls", installs)
    }

    public func quotas() async throws -> QuotaTable {
        try await setting("quotas", as: QuotaTable.self) ?? QuotaTable()
    }

    public func updateQuotas(_ change: @escaping @Sendable (inout QuotaTable) -> Void) async throws -> QuotaTable {
        try await updateSetting("quotas", default: QuotaTable()) { quotas in
            change(&quotas)
            quotas.revision += 1
        }
    }

    // MARK: Rows of settings

    private func setting<T: Decodable>(_ key: String, as type: T.Type) async throws -> T? {
        try await database.query("SELECT value::text FROM sdbox_settings WHERE key = \(key)").record(T.self)
    }

    private func saveSetting(_ key: String, _ value: some Encodable) async throws {
        try await database.query("""
            INSERT INTO sdbox_settings (key, value) VALUES (\(key), \(try RecordCoding.text(value))::jsonb)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value
            """)
    }

    /// Changes a setting in one transaction, its row locked meanwhile, starting from `default` when it
    /// was never set; returns it.
    private func updateSetting<T: Codable & Sendable>(
        _ key: String, default initial: T, _ change: @escaping @Sendable (inout T) -> Void
    ) async throws -> T {
        try await database.transaction { connection in
            try await Self.change(in: .settings, key: key, default: initial, on: connection, logger: database.logger, change)
        }
    }

    /// The tables whose rows ``change(in:key:default:on:logger:_:)`` changes.
    private enum KeyedTable: String {
        case pools = "sdbox_pools"
        case settings = "sdbox_settings"

        var keyColumn: String { self == .pools ? "name" : "key" }
        var valueColumn: String { self == .pools ? "record" : "value" }
    }

    /// Within a transaction: makes sure the row `key` of `table` exists (as `initial`), locks it, changes
    /// its record, writes it back and returns it.
    private static func change<T: Codable & Sendable>(
        in table: KeyedTable, key: String, default initial: T, on connection: PostgresConnection, logger: Logger,
        _ change: (inout T) -> Void
    ) async throws -> T {
        let (name, keyColumn, valueColumn) = (table.rawValue, table.keyColumn, table.valueColumn)
        try await connection.query(
            PostgresQuery(
                unsafeSQL: "INSERT INTO \(name) (\(keyColumn), \(valueColumn)) VALUES ($1, $2::jsonb) ON CONFLICT DO NOTHING",
                binds: binds(key, try RecordCoding.text(initial))
            ),
            logger: logger
        )
        let select = PostgresQuery(unsafeSQL: "SELECT \(valueColumn)::text FROM \(name) WHERE \(keyColumn) = $1 FOR UPDATE", binds: binds(key))
        guard var record = try await connection.query(select, logger: logger).record(T.self) else {
            throw PostgresStoreError("\(name): the row \(key) went inside a transaction")
        }
        change(&record)
        try await connection.query(
            PostgresQuery(unsafeSQL: "UPDATE \(name) SET \(valueColumn) = $2::jsonb WHERE \(keyColumn) = $1", binds: binds(key, try RecordCoding.text(record))),
            logger: logger
        )
        return record
    }

    private static func binds(_ values: String...) -> PostgresBindings {
        var bindings = PostgresBindings()
        for value in values { bindings.append(value) }
        return bindings
    }
}

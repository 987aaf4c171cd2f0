import Foundation
import SDBoxCore

/// The ``CatalogStore`` in LMDB.
public struct LMDBCatalogStore: CatalogStore {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    // MARK: Models

    static func modelKey(_ type: ModelType, _ name: String) -> String { "\(type.rawValue)/\(name)" }

    public func models() async throws -> [ModelRecord] {
        try await database.read { txn, tables in try txn.records(ModelRecord.self, in: tables.models) }
    }

    public func model(_ type: ModelType, named name: String) async throws -> ModelRecord? {
        try await database.read { txn, tables in
            try txn.record(ModelRecord.self, in: tables.models, key: Self.modelKey(type, name))
        }
    }

    /// Writes a model record and makes sure its pool record exists (or, for a record marked deleted, is gone).
    public func save(_ model: ModelRecord) async throws {
        let deleted = model.status == .deleted
        if model.type == .stableDiffusion && deleted { database.catalogCache.poolRemoved(model.name) }
        try await database.write { txn, tables in
            try txn.put(tables.models, key: Self.modelKey(model.type, model.name), value: RecordCoding.encode(model))
            guard model.type == .stableDiffusion else { return }
            let function = PoolRecord(model: model.name)
            if deleted {
                try txn.delete(tables.functions, key: function.functionName)
            } else {
                try txn.put(tables.functions, key: function.functionName, value: RecordCoding.encode(function), overwrite: false)
            }
        }
        if model.type == .stableDiffusion && !deleted { database.catalogCache.poolExists(model.name) }
    }

    /// Removes a model record and its pool record.
    public func removeModel(_ type: ModelType, named name: String) async throws {
        database.catalogCache.poolRemoved(name)
        try await database.write { txn, tables in
            try txn.delete(tables.models, key: Self.modelKey(type, name))
            try txn.delete(tables.functions, key: PoolRecord.name(forModel: name))
        }
    }

    // MARK: Pools (the original's "functions")

    public func pools() async throws -> [PoolRecord] {
        try await database.read { txn, tables in try txn.records(PoolRecord.self, in: tables.functions) }
    }

    /// Changes a model's pool record, creating it first if it is missing, and returns it.
    public func updatePool(model: String, _ change: @escaping @Sendable (inout PoolRecord) -> Void) async throws -> PoolRecord {
        let record = try await database.write { txn, tables in
            let key = PoolRecord.name(forModel: model)
            var function = try txn.record(PoolRecord.self, in: tables.functions, key: key) ?? PoolRecord(model: model)
            change(&function)
            try txn.put(tables.functions, key: key, value: RecordCoding.encode(function))
            return function
        }
        database.catalogCache.poolExists(model)
        return record
    }

    /// Makes sure a model has a pool record (a deleted pool comes back with default settings when
    /// its model is used again).
    public func ensurePool(model: String) async throws {
        let cached = database.catalogCache.pool(model)
        if cached.known { return }
        let key = PoolRecord.name(forModel: model)
        let exists = try await database.read { txn, tables in try txn.get(tables.functions, key: key) != nil }
        if !exists {
            _ = try await database.write { txn, tables in
                try txn.put(tables.functions, key: key, value: RecordCoding.encode(PoolRecord(model: model)), overwrite: false)
            }
        }
        database.catalogCache.poolExists(model, removals: cached.removals)
    }

    /// Removes a model's pool record; false if there was none.
    @discardableResult
    public func removePool(model: String) async throws -> Bool {
        database.catalogCache.poolRemoved(model)
        return try await database.write { txn, tables in
            try txn.delete(tables.functions, key: PoolRecord.name(forModel: model))
        }
    }

    // MARK: Settings

    /// A user's A1111 options (`POST /sdapi/v1/options`), empty when never set.
    public func options(forUser user: String) async throws -> [String: JSONValue] {
        let cached = database.catalogCache.options(of: user)
        if let known = cached.known { return known }
        let options = try await database.read { txn, tables in
            try txn.record([String: JSONValue].self, in: tables.settings, key: "options/\(user)") ?? [:]
        }
        database.catalogCache.optionsRead(options, of: user, writes: cached.writes)
        return options
    }

    /// Merges `changes` into a user's options and returns the result.
    public func updateOptions(forUser user: String, _ changes: [String: JSONValue]) async throws -> [String: JSONValue] {
        database.catalogCache.optionsChanging()
        let options = try await database.write { txn, tables in
            var options = try txn.record([String: JSONValue].self, in: tables.settings, key: "options/\(user)") ?? [:]
            options.merge(changes) { _, new in new }
            try txn.put(tables.settings, key: "options/\(user)", value: RecordCoding.encode(options))
            return options
        }
        database.catalogCache.optionsWritten(options, of: user)
        return options
    }

    // MARK: Remote workers

    /// The remote workers added at run time, kept in the settings table under `remoteWorkers`.
    public func remoteWorkers() async throws -> [RemoteWorkerSettings] {
        try await database.read { txn, tables in
            try txn.record([RemoteWorkerSettings].self, in: tables.settings, key: "remoteWorkers") ?? []
        }
    }

    public func saveRemoteWorkers(_ workers: [RemoteWorkerSettings]) async throws {
        try await database.write { txn, tables in
            try txn.put(tables.settings, key: "remoteWorkers", value: RecordCoding.encode(workers))
        }
    }

    // MARK: Queue pause

    /// What an admin has paused, kept in the settings table under `queuePause`.
    public func queuePause() async throws -> QueuePause {
        try await database.read { txn, tables in
            try txn.record(QueuePause.self, in: tables.settings, key: "queuePause") ?? QueuePause()
        }
    }

    public func saveQueuePause(_ pause: QueuePause) async throws {
        try await database.write { txn, tables in
            try txn.put(tables.settings, key: "queuePause", value: RecordCoding.encode(pause))
        }
    }

    // MARK: Installs from links

    /// The installs from links, kept in the settings table under `modelInstalls`.
    public func modelInstalls() async throws -> [ModelInstall] {
        try await database.read { txn, tables in
            try txn.record([ModelInstall].self, in: tables.settings, key: "modelInstalls") ?? []
        }
    }

    public func saveModelInstalls(_ installs: [ModelInstall]) async throws {
        try await database.write { txn, tables in
            try txn.put(tables.settings, key: "modelInstalls", value: RecordCoding.encode(installs))
        }
    }

    // MARK: Quotas

    /// The quotas, kept in the settings table under `quotas`.
    public func quotas() async throws -> QuotaTable {
        try await database.read { txn, tables in
            try txn.record(QuotaTable.self, in: tables.settings, key: "quotas") ?? QuotaTable()
        }
    }

    public func updateQuotas(_ change: @escaping @Sendable (inout QuotaTable) -> Void) async throws -> QuotaTable {
        try await database.write { txn, tables in
            var quotas = try txn.record(QuotaTable.self, in: tables.settings, key: "quotas") ?? QuotaTable()
            change(&quotas)
            quotas.revision += 1
            try txn.put(tables.settings, key: "quotas", value: RecordCoding.encode(quotas))
            return quotas
        }
    }
}

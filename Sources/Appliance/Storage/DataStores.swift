import Logging
import NIOPosix
import ServiceLifecycle
import Storage

/// The four stores a box works with, opened as `database` says: LMDB in the data folder's `db/` (the
/// embedded default) or the PostgreSQL database of `database.url`, its schema migrated as it opens.
public struct DataStores: Sendable {
    public let tasks: any TaskStore
    public let catalog: any CatalogStore
    public let keys: any KeyStore
    public let users: any UserStore
    /// What keeps the stores open while the box runs (PostgreSQL's pool); run it first in the service
    /// group, so that it closes last.
    public let service: (any Service)?
    /// Where the stores are, for the log (a PostgreSQL URL without its password).
    public let summary: String

    /// Opens the stores; a database that cannot be reached or migrated throws ``PostgresStoreError``.
    public static func open(
        _ settings: DatabaseSettings, folder: DataFolder, threadPool: NIOThreadPool, logger: Logger
    ) async throws -> DataStores {
        if let location = settings.postgres {
            let database = try await PostgresDatabase.open(location, maxConnections: settings.maxConnections, logger: logger)
            return DataStores(
                tasks: PostgresTaskStore(database: database), catalog: PostgresCatalogStore(database: database),
                keys: PostgresKeyStore(database: database), users: PostgresUserStore(database: database), service: database,
                summary: "PostgreSQL \(location.masked)"
            )
        }
        let database = try Database(path: folder.database, threadPool: threadPool)
        return DataStores(
            tasks: LMDBTaskStore(database: database), catalog: LMDBCatalogStore(database: database), keys: LMDBKeyStore(database: database),
            users: LMDBUserStore(database: database), service: nil, summary: "LMDB \(folder.database)"
        )
    }
}

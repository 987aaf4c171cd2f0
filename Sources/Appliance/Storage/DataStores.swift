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
    /// What keeps the stores open while the box runs (PostgreSQL's pool, then this box's row in it); run
    /// them first in the service group, in this order, so that they stop last.
    public let services: [any Service]
    /// Where the stores are, for the log (a PostgreSQL URL without its password).
    public let summary: String

    /// Opens the stores; a database that cannot be reached or migrated throws ``PostgresStoreError``.
    /// A PostgreSQL database another live box uses is refused (``PostgresNodeLease``), `node` naming this one.
    public static func open(
        _ settings: DatabaseSettings, folder: DataFolder, node: String, threadPool: NIOThreadPool, logger: Logger
    ) async throws -> DataStores {
        if let location = settings.postgres {
            let database = try await PostgresDatabase.open(
                location, maxConnections: settings.maxConnections, timeout: .seconds(settings.timeoutSeconds), logger: logger
            )
            let lease: PostgresNodeLease
            do {
                lease = try await PostgresNodeLease.acquire(database, node: node)
            } catch {
                await database.close()
                throw error
            }
            return DataStores(
                tasks: PostgresTaskStore(database: database), catalog: PostgresCatalogStore(database: database),
                keys: PostgresKeyStore(database: database), users: PostgresUserStore(database: database), services: [database, lease],
                summary: "PostgreSQL \(location.masked)"
            )
        }
        let database = try Database(path: folder.database, threadPool: threadPool)
        return DataStores(
            tasks: LMDBTaskStore(database: database), catalog: LMDBCatalogStore(database: database), keys: LMDBKeyStore(database: database),
            users: LMDBUserStore(database: database), services: [], summary: "LMDB \(folder.database)"
        )
    }
}

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
    /// With PostgreSQL, what the box needs to work in a fleet with the others on the same database.
    public let fleet: FleetLinks?
    /// What keeps the stores open while the box runs (PostgreSQL's pool, then this box's row in it); run
    /// them first in the service group, in this order, so that they stop last.
    public let services: [any Service]
    /// Where the stores are, for the log (a PostgreSQL URL without its password).
    public let summary: String

    /// The PostgreSQL parts a box of a fleet works with.
    public struct FleetLinks: Sendable {
        /// The shared queue's claims.
        public let claims: PostgresTaskClaims
        /// The notices between boxes.
        public let notifications: PostgresNotifications
        /// This box's row among the fleet's.
        public let lease: PostgresNodeLease
        /// What users' unfinished tasks accepted by the other boxes take, for the per-user queue limits.
        public let usage: PostgresUnfinishedUsage
    }

    /// Opens the stores; a database that cannot be reached or migrated throws ``PostgresStoreError``.
    /// With PostgreSQL, the box takes its row as `node` (``PostgresNodeLease``), live for `fleet.claimSeconds`.
    public static func open(
        _ settings: DatabaseSettings, fleet: FleetSettings, folder: DataFolder, node: String, threadPool: NIOThreadPool, logger: Logger
    ) async throws -> DataStores {
        if let location = settings.postgres {
            let database = try await PostgresDatabase.open(
                location, maxConnections: settings.maxConnections, timeout: .seconds(settings.timeoutSeconds), logger: logger
            )
            let lease: PostgresNodeLease
            do {
                lease = try await PostgresNodeLease.acquire(database, node: node, liveSeconds: fleet.claimSeconds)
            } catch {
                await database.close()
                throw error
            }
            let held = HeldClaims()
            let links = FleetLinks(
                claims: PostgresTaskClaims(database: database, node: node, held: held),
                notifications: PostgresNotifications(database: database), lease: lease,
                usage: PostgresUnfinishedUsage(database: database, node: node)
            )
            return DataStores(
                tasks: PostgresTaskStore(database: database, node: node, claims: held), catalog: PostgresCatalogStore(database: database),
                keys: PostgresKeyStore(database: database), users: PostgresUserStore(database: database), fleet: links,
                services: [database, lease], summary: "PostgreSQL \(location.masked)"
            )
        }
        let database = try Database(path: folder.database, threadPool: threadPool)
        return DataStores(
            tasks: LMDBTaskStore(database: database), catalog: LMDBCatalogStore(database: database), keys: LMDBKeyStore(database: database),
            users: LMDBUserStore(database: database), fleet: nil, services: [], summary: "LMDB \(folder.database)"
        )
    }
}

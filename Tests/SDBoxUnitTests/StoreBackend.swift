import Foundation
import Logging
import PostgresTestSupport
import Storage
import Testing

/// The stores a test of the shared store suite runs against: one of each, new and empty.
enum StoreBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case lmdb
    case postgres

    var testDescription: String { rawValue }

    /// A new, empty set of stores on this backend: a new LMDB folder, or a new database on the tests'
    /// PostgreSQL server.
    func open() async throws -> OpenStores {
        switch self {
        case .lmdb:
            let directory = try TemporaryDirectory()
            return OpenStores(backend: self, lmdb: (directory, try Database(path: directory.path)), postgres: nil)
        case .postgres:
            let location = try PostgresLocation(url: try await PostgresServer.shared().makeDatabase())
            // A long timeout: the suite checks what the stores do, and a loaded CI machine (30 changes of one
            // row through 4 connections) once took more than the default 10 s.
            let database = try await PostgresDatabase.open(location, maxConnections: 4, timeout: .seconds(120), logger: Logger(label: "sdbox.test.postgres"))
            return OpenStores(backend: self, lmdb: nil, postgres: database)
        }
    }
}

/// One backend's stores, opened by ``StoreBackend/open()``; ``close()`` them at the end of the test.
final class OpenStores: Sendable {
    let backend: StoreBackend
    let lmdb: (directory: TemporaryDirectory, database: Database)?
    let postgres: PostgresDatabase?

    init(backend: StoreBackend, lmdb: (directory: TemporaryDirectory, database: Database)?, postgres: PostgresDatabase?) {
        self.backend = backend
        self.lmdb = lmdb
        self.postgres = postgres
    }

    var tasks: any TaskStore {
        if let postgres { return PostgresTaskStore(database: postgres, node: "test", claims: HeldClaims()) }
        return LMDBTaskStore(database: lmdb!.database)
    }

    var catalog: any CatalogStore {
        if let postgres { return PostgresCatalogStore(database: postgres) }
        return LMDBCatalogStore(database: lmdb!.database)
    }

    /// A key store of its own on the same data, as another process (or another box) has.
    func keys(recheckInterval: Duration = .seconds(5)) -> any KeyStore {
        if let postgres { return PostgresKeyStore(database: postgres, recheckInterval: recheckInterval) }
        return LMDBKeyStore(database: lmdb!.database, recheckInterval: recheckInterval)
    }

    var users: any UserStore {
        if let postgres { return PostgresUserStore(database: postgres) }
        return LMDBUserStore(database: lmdb!.database)
    }

    func close() async {
        await postgres?.close()
    }
}

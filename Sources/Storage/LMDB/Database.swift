import Foundation
import NIOPosix
import SDBoxCore

/// sdbox's LMDB database: typed tables for tasks, models, functions, settings, API keys, users and sessions, reached through async
/// methods that run each transaction on a thread pool, never on an event loop.
public final class Database: Sendable {
    let environment: LMDBEnvironment
    let threadPool: NIOThreadPool
    let tables: Tables
    /// Where write transactions wait to be committed together.
    let commits: GroupCommit
    /// The tasks this process wrote or read lately (``TaskStore`` keeps it true).
    let taskCache = TaskCache()
    /// Pools with a record and users' options (``LMDBCatalogStore`` keeps it true).
    let catalogCache = CatalogCache()

    struct Tables: Sendable {
        let tasks: LMDBTable
        /// Ids of tasks that are queued or running, so recovery need not scan every task.
        let activeTasks: LMDBTable
        /// `<createdAt in ms, 15 digits>_<id>` for listing tasks newest first.
        let tasksByTime: LMDBTable
        /// Ids of tasks whose webhook is not delivered yet, so deliveries resume after a restart.
        let pendingCallbacks: LMDBTable
        let models: LMDBTable
        let functions: LMDBTable
        let settings: LMDBTable
        /// API keys by id.
        let keys: LMDBTable
        /// Users who sign in with a password, by name.
        let users: LMDBTable
        /// Their sessions, by the sha256 of the token.
        let sessions: LMDBTable
    }

    /// Opens the database in the folder `path`.
    public init(path: String, threadPool: NIOThreadPool = .singleton) throws {
        let environment = try LMDBEnvironment(path: path)
        self.environment = environment
        self.threadPool = threadPool
        self.commits = GroupCommit(environment: environment, threadPool: threadPool)
        self.tables = Tables(
            tasks: try environment.openTable(named: "tasks"),
            activeTasks: try environment.openTable(named: "tasks.active"),
            tasksByTime: try environment.openTable(named: "tasks.byTime"),
            pendingCallbacks: try environment.openTable(named: "tasks.pendingCallbacks"),
            models: try environment.openTable(named: "models"),
            functions: try environment.openTable(named: "functions"),
            settings: try environment.openTable(named: "settings"),
            keys: try environment.openTable(named: "keys"),
            users: try environment.openTable(named: "users"),
            sessions: try environment.openTable(named: "sessions")
        )
    }

    /// Runs a read-only transaction on the thread pool.
    func read<R: Sendable>(_ body: @escaping @Sendable (LMDBTransaction, Tables) throws -> R) async throws -> R {
        let environment = self.environment
        let tables = self.tables
        return try await threadPool.runIfActive { try environment.read { try body($0, tables) } }
    }

    /// Runs a write on the thread pool, committed with the writes that arrive meanwhile (``GroupCommit``);
    /// returns once it is on disk. A write that throws changes nothing.
    func write<R: Sendable>(_ body: @escaping @Sendable (LMDBTransaction, Tables) throws -> R) async throws -> R {
        let tables = self.tables
        return try await commits.write { try body($0, tables) }
    }
}

extension LMDBTransaction {
    /// The record stored under `key`, decoded.
    func record<T: Decodable>(_ type: T.Type, in table: LMDBTable, key: String) throws -> T? {
        try get(table, key: key).map { try RecordCoding.decode(T.self, from: $0) }
    }

    /// Every record of a table, decoded, in key order.
    func records<T: Decodable>(_ type: T.Type, in table: LMDBTable) throws -> [T] {
        var result: [T] = []
        try forEach(table) { _, bytes in
            result.append(try RecordCoding.decode(T.self, from: bytes))
            return true
        }
        return result
    }
}

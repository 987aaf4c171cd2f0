import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// This box's row in `sdbox_nodes`: its name, when it started, its last heartbeat and its report (GPUs and
/// workers, as JSON), renewed by the fleet while the box runs (``heartbeat(report:)``) and removed when it
/// stops. Every box reads the rows (``nodes()``) to show the whole fleet and to count the workers of each
/// model on the others.
///
/// Claims carry the box's name, so two live boxes must never share one: a box starting under a name whose
/// row another instance renewed within ``liveSeconds`` waits for that row to go stale (a box that crashed
/// and restarts at once), and refuses to start if it keeps being renewed (another box has the name).
public final class PostgresNodeLease: Service, Sendable {
    let database: PostgresDatabase
    public let node: String
    let instance: String

    /// How long a row counts as a live box after its last heartbeat.
    public let liveSeconds: Int

    init(database: PostgresDatabase, node: String, instance: String, liveSeconds: Int) {
        self.database = database
        self.node = node
        self.instance = instance
        self.liveSeconds = liveSeconds
    }

    /// Takes the row of `node`, once no other live instance holds it; refuses (``PostgresStoreError``) when
    /// one keeps renewing it for longer than `liveSeconds`.
    public static func acquire(_ database: PostgresDatabase, node: String, liveSeconds: Int) async throws -> PostgresNodeLease {
        let instance = UUID().uuidString.lowercased()
        let deadline = ContinuousClock.now + .seconds(liveSeconds * 2)
        var warned = false
        while true {
            let taken = try await database.transaction { connection in
                let rows = try await connection.query("""
                    INSERT INTO sdbox_nodes (name, instance, started_at, heartbeat_at) VALUES (\(node), \(instance), now(), now())
                    ON CONFLICT (name) DO UPDATE SET instance = EXCLUDED.instance, started_at = now(), heartbeat_at = now(), report = NULL
                        WHERE sdbox_nodes.heartbeat_at < now() - make_interval(secs => \(liveSeconds))
                    RETURNING name
                    """, logger: database.logger)
                for try await _ in rows.decode(String.self) { return true }
                return false
            }
            if taken { return PostgresNodeLease(database: database, node: node, instance: instance, liveSeconds: liveSeconds) }
            guard ContinuousClock.now < deadline else {
                throw PostgresStoreError(
                    "another box named '\(node)' is using the database \(database.location.masked): give each box its own node.name (SDBOX_NODE_NAME)"
                )
            }
            if !warned {
                database.logger.notice("fleet: the row of a box named '\(node)' is still live; waiting for it to go stale (a box that crashed, or another box of this name)")
                warned = true
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// Renews this box's row with its `report` (JSON).
    public func heartbeat(report: String) async throws {
        try await database.query("""
            UPDATE sdbox_nodes SET heartbeat_at = now(), report = \(report)::jsonb WHERE name = \(node) AND instance = \(instance)
            """)
    }

    /// A box of the fleet as its row shows it.
    public struct Node: Sendable, Equatable {
        public var name: String
        public var startedAt: Date
        public var heartbeatAt: Date
        /// Whether it renewed its row within ``PostgresNodeLease/liveSeconds``.
        public var live: Bool
        /// Its last report (JSON), if it sent one.
        public var report: String?
    }

    /// Every box with a row, by name.
    public func nodes() async throws -> [Node] {
        let rows = try await database.query("""
            SELECT name, started_at, heartbeat_at, heartbeat_at >= now() - make_interval(secs => \(liveSeconds)), report::text
            FROM sdbox_nodes ORDER BY name
            """)
        var nodes: [Node] = []
        for try await (name, started, heartbeat, live, report) in rows.decode((String, Date, Date, Bool, String?).self) {
            nodes.append(Node(name: name, startedAt: started, heartbeatAt: heartbeat, live: live, report: report))
        }
        return nodes
    }

    /// Waits for graceful shutdown, then removes the row.
    public func run() async throws {
        try? await gracefulShutdown()
        try? await database.query("DELETE FROM sdbox_nodes WHERE name = \(node) AND instance = \(instance)")
    }
}

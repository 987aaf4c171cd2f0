import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// This box's row in `sdbox_nodes`, renewed while it runs and removed when it stops.
///
/// Until the fleet's scheduler claims tasks from the database (issue 18's next step), each box queues the
/// unfinished tasks it finds at start as its own: two boxes on one database would run each other's tasks
/// twice. So a box refuses to start while another box, under another name, has renewed its row within
/// ``liveSeconds``. A box restarting under its own name takes its row over at once (a crash leaves the
/// row behind).
public final class PostgresNodeLease: Service, Sendable {
    let database: PostgresDatabase
    public let node: String
    let instance: String

    /// How often the row is renewed.
    static let renewSeconds = 10
    /// How long a row counts as a live box after its last renewal.
    static let liveSeconds = 30

    init(database: PostgresDatabase, node: String, instance: String) {
        self.database = database
        self.node = node
        self.instance = instance
    }

    /// Takes the database for `node`, or refuses (``PostgresStoreError``) while another live box holds it.
    public static func acquire(_ database: PostgresDatabase, node: String) async throws -> PostgresNodeLease {
        let instance = UUID().uuidString.lowercased()
        let live = liveSeconds
        let others: [String] = try await database.transaction { connection in
            // One box at a time decides, so that two starting together cannot both see the other absent.
            try await connection.query("LOCK TABLE sdbox_nodes IN EXCLUSIVE MODE", logger: database.logger)
            var others: [String] = []
            let rows = try await connection.query(
                "SELECT name FROM sdbox_nodes WHERE name <> \(node) AND heartbeat_at > now() - make_interval(secs => \(live))",
                logger: database.logger
            )
            for try await (name) in rows.decode(String.self) { others.append(name) }
            guard others.isEmpty else { return others }
            try await connection.query(
                """
                INSERT INTO sdbox_nodes (name, instance, started_at, heartbeat_at) VALUES (\(node), \(instance), now(), now())
                ON CONFLICT (name) DO UPDATE SET instance = EXCLUDED.instance, started_at = now(), heartbeat_at = now()
                """,
                logger: database.logger
            )
            return []
        }
        guard others.isEmpty else {
            throw PostgresStoreError(
                "database \(database.location.masked) is in use by another box (\(others.sorted().joined(separator: ", "))); several boxes on one "
                    + "database need the fleet scheduler, which is not done yet: give each box a database of its own"
            )
        }
        return PostgresNodeLease(database: database, node: node, instance: instance)
    }

    /// Renews the row every ``renewSeconds`` until graceful shutdown, then removes it.
    public func run() async throws {
        while true {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(Self.renewSeconds)) }
            } catch {
                break
            }
            do {
                try await database.query("UPDATE sdbox_nodes SET heartbeat_at = now() WHERE name = \(node) AND instance = \(instance)")
            } catch {
                database.logger.warning("could not renew this box's row in sdbox_nodes", metadata: ["error": "\(PostgresStoreError.explain(error))"])
            }
        }
        try? await database.query("DELETE FROM sdbox_nodes WHERE name = \(node) AND instance = \(instance)")
    }
}

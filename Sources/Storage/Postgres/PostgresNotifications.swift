import Foundation
import Logging
import PostgresNIO

/// The fleet's notices (``FleetNotice``), heard on a connection of their own that `LISTEN`s on
/// ``FleetNotice/channel``, and sent with `pg_notify` through the pool.
///
/// The listening connection is opened again whenever it breaks (PostgreSQL restarted, the network cut),
/// every second until it works; each time it opens, a ``FleetNotice/Event/resync`` notice goes first, as
/// notices sent meanwhile were missed. Nothing polls the database for news.
public struct PostgresNotifications: Sendable {
    let database: PostgresDatabase

    public init(database: PostgresDatabase) {
        self.database = database
    }

    /// Sends `notice` to every box listening (this one too).
    public func send(_ notice: FleetNotice) async throws {
        try await database.query("SELECT pg_notify(\(FleetNotice.channel), \(notice.payload()))")
    }

    /// Hands every notice heard to `handle`, one at a time, until the task is cancelled.
    public func listen(_ handle: @escaping @Sendable (FleetNotice) async -> Void) async {
        let (location, logger) = (database.location, database.logger)
        var failures = 0
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: try location.connectionConfiguration(), id: 1, logger: logger
                )
                defer { Task { try? await connection.close() } }
                try await connection.listen(on: FleetNotice.channel) { notices in
                    if failures > 0 { logger.notice("fleet: listening to the other boxes again") }
                    failures = 0
                    await handle(FleetNotice(.resync))
                    for try await notice in notices {
                        if let notice = FleetNotice(payload: notice.payload) { await handle(notice) }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                failures += 1
                if failures == 1 {
                    logger.warning("fleet: the connection that hears the other boxes broke; opening it again", metadata: [
                        "error": "\(PostgresStoreError.explain(error))"
                    ])
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}

import Foundation
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// sdbox's PostgreSQL database, the store several boxes can share: a pool of connections (PostgresNIO's
/// `PostgresClient`), its schema migrated at open.
///
/// ``open(_:maxConnections:logger:)`` connects once (so that a wrong address, user, password or database
/// fails at once, with the server's words), applies the migrations the database lacks, then starts the
/// pool's run loop in a task of its own. As a `Service`, the database closes its pool at graceful
/// shutdown; put it first in a service group, so that it closes after the services that use it.
public final class PostgresDatabase: Service, Sendable {
    public let location: PostgresLocation
    let client: PostgresClient
    let logger: Logger
    /// How long one request may wait for a connection and its answer before the database counts as
    /// unreachable (PostgresNIO's pool would wait for a connection as long as the server is away).
    let timeout: Duration
    private let running: Task<Void, Never>

    private init(location: PostgresLocation, client: PostgresClient, timeout: Duration, logger: Logger) {
        self.location = location
        self.client = client
        self.timeout = timeout
        self.logger = logger
        // Started at once (not merely scheduled): the pool counts as running before the first query leases a connection.
        running = Task.immediate { await client.run() }
    }

    /// Connects to the database at `location`, brings its schema up to date, and opens a pool of at most
    /// `maxConnections` connections. Throws ``PostgresStoreError`` naming the database (masked) and the cause.
    public static func open(
        _ location: PostgresLocation, maxConnections: Int = 10, timeout: Duration = .seconds(10), logger: Logger
    ) async throws -> PostgresDatabase {
        try await withConnection(to: location, logger: logger) { connection in
            do {
                try await PostgresMigrations.apply(on: connection, logger: logger)
            } catch let error as PostgresStoreError {
                throw PostgresStoreError("database \(location.masked): \(error.description)")
            } catch {
                throw PostgresStoreError("database \(location.masked) could not be migrated: \(PostgresStoreError.explain(error))")
            }
        }
        let client = PostgresClient(configuration: location.clientConfiguration(maxConnections: maxConnections), backgroundLogger: logger)
        return PostgresDatabase(location: location, client: client, timeout: timeout, logger: logger)
    }

    /// The schema version of the database at `location` and the newest this sdbox knows, from one
    /// connection that changes nothing (`sdbox doctor`).
    public static func schemaVersion(at location: PostgresLocation, logger: Logger) async throws -> (current: Int, latest: Int) {
        try await withConnection(to: location, logger: logger) { connection in
            do {
                return (try await PostgresMigrations.version(on: connection, logger: logger), PostgresMigrations.latest)
            } catch {
                throw PostgresStoreError("database \(location.masked): \(PostgresStoreError.explain(error))")
            }
        }
    }

    /// Runs `body` on a connection of its own to `location`, closed after it.
    private static func withConnection<R: Sendable>(
        to location: PostgresLocation, logger: Logger, _ body: (PostgresConnection) async throws -> R
    ) async throws -> R {
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                configuration: try location.connectionConfiguration(), id: 0, logger: logger
            )
        } catch {
            throw PostgresStoreError("database \(location.masked) cannot be reached: \(PostgresStoreError.explain(error))")
        }
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Waits for graceful shutdown, then closes the pool.
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    /// Closes the pool: queries after this fail.
    public func close() async {
        running.cancel()
        await running.value
    }

    /// Runs one statement on a connection of the pool.
    @discardableResult
    func query(_ query: PostgresQuery) async throws -> PostgresRowSequence {
        let (client, logger) = (self.client, self.logger)
        return try await withinTimeout { try await client.query(query, logger: logger) }
    }

    /// Runs `body` in a transaction on a connection of the pool (``PostgresConnection/transaction(logger:_:)``).
    func transaction<R: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> R) async throws -> R {
        let (client, logger) = (self.client, self.logger)
        return try await withinTimeout {
            try await client.withConnection { connection in
                try await connection.transaction(logger: logger, body)
            }
        }
    }

    /// `body`'s answer, or ``PostgresStoreError`` (unavailable) once ``timeout`` has passed: `body` is then
    /// cancelled (a transaction not committed is rolled back by the server) and not waited for, as a query
    /// in flight when the server went away may never end (PostgresNIO does not end it on cancellation).
    func withinTimeout<R: Sendable>(_ body: @escaping @Sendable () async throws -> R) async throws -> R {
        let (timeout, location) = (self.timeout, self.location)
        let race = FirstAnswer<R>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                race.start(
                    continuation,
                    body: Task {
                        do {
                            race.finish(.success(try await body()))
                        } catch {
                            race.finish(.failure(error))
                        }
                    },
                    timer: Task {
                        try? await Task.sleep(for: timeout)
                        if !Task.isCancelled {
                            race.finish(.failure(PostgresStoreError("the database \(location.masked) did not answer within \(timeout)", isUnavailable: true)))
                        }
                    }
                )
            }
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }
}

/// The first of a query's answer and its timeout (``PostgresDatabase/withinTimeout(_:)``): it resumes the
/// caller once, and cancels both the query and the timer.
private final class FirstAnswer<R: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<R, any Error>?
        var result: Result<R, any Error>?
        var tasks: [Task<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// Notes the caller and the two tasks racing; an answer that came before is given at once.
    func start(_ continuation: CheckedContinuation<R, any Error>, body: Task<Void, Never>, timer: Task<Void, Never>) {
        let early = state.withLock { state -> Result<R, any Error>? in
            state.tasks = [body, timer]
            guard let result = state.result else {
                state.continuation = continuation
                return nil
            }
            return result
        }
        if let early {
            body.cancel()
            timer.cancel()
            continuation.resume(with: early)
        }
    }

    /// Gives `result` to the caller unless an answer was given already.
    func finish(_ result: Result<R, any Error>) {
        let (continuation, tasks) = state.withLock { state -> (CheckedContinuation<R, any Error>?, [Task<Void, Never>]) in
            guard state.result == nil else { return (nil, []) }
            state.result = result
            defer { state.continuation = nil }
            return (state.continuation, state.tasks)
        }
        for task in tasks { task.cancel() }
        continuation?.resume(with: result)
    }
}

import PostgresNIO

/// Why the PostgreSQL database could not be used, in words an operator can act on; never holds a password.
public struct PostgresStoreError: Error, Sendable, CustomStringConvertible {
    public let description: String
    /// Whether the database could not be reached (no connection or no answer in time), rather than refusing.
    public let isUnavailable: Bool

    init(_ description: String, isUnavailable: Bool = false) {
        self.description = description
        self.isUnavailable = isUnavailable
    }

    /// What went wrong with the database, from PostgresNIO's error (whose own description says nothing, so
    /// as not to leak a query's values): the server's message, or the failure to connect.
    static func explain(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return String(describing: error) }
        if let message = error.serverInfo?[.message] {
            let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return message + state
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
}

extension PostgresStoreError {
    /// What went wrong, when `error` says the database cannot be reached or went away mid-query (the
    /// server stopped, restarted or the network was cut): the same request may succeed later. Nil for
    /// any other error.
    public static func unavailability(of error: any Error) -> PostgresStoreError? {
        if let error = error as? PostgresStoreError { return error.isUnavailable ? error : nil }
        guard let error = error as? PSQLError else { return nil }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
            return PostgresStoreError("the database cannot be reached: \(explain(error))")
        case .server:
            // Connection exceptions (08) and the server shutting down or starting (57P01-57P03).
            guard let state = error.serverInfo?[.sqlState], state.hasPrefix("08") || state.hasPrefix("57P") else { return nil }
            return PostgresStoreError("the database cannot take requests now: \(explain(error))")
        default:
            return nil
        }
    }
}

extension PostgresStoreError {
    /// Whether `error` is PostgreSQL refusing a text it cannot hold (SQLSTATE 22P05: a NUL character,
    /// `\u0000`, which `jsonb` and `text` reject): the request's own content, so a 400 rather than a 500.
    public static func isUnstorableText(_ error: any Error) -> Bool {
        (error as? PSQLError)?.serverInfo?[.sqlState] == "22P05"
    }
}

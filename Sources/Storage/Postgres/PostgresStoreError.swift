import PostgresNIO

/// Why the PostgreSQL database could not be used, in words an operator can act on; never holds a password.
public struct PostgresStoreError: Error, Sendable, CustomStringConvertible {
    public let description: String

    init(_ description: String) { self.description = description }

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

import Logging
import PostgresNIO

extension PostgresConnection {
    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws, and its error
    /// thrown as it is (a store's own errors, such as ``TaskStoreError``, reach the caller unwrapped).
    func transaction<R: Sendable>(logger: Logger, _ body: (PostgresConnection) async throws -> R) async throws -> R {
        try await query("BEGIN", logger: logger)
        let result: R
        do {
            result = try await body(self)
        } catch {
            try? await query("ROLLBACK", logger: logger)
            throw error
        }
        try await query("COMMIT", logger: logger)
        return result
    }
}

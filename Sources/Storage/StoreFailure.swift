/// What a store's errors mean for whoever retries: some pass by themselves.
public enum StoreFailure {
    /// Whether `error` may pass by itself, so that the same write succeeds later: LMDB's disk or map is
    /// full, or PostgreSQL cannot be reached.
    public static func isTransient(_ error: any Error) -> Bool {
        if let error = error as? LMDBError { return error.isOutOfSpace }
        return PostgresStoreError.unavailability(of: error) != nil
    }

    /// `body`'s answer, asked again each second while the store fails transiently (``isTransient(_:)``)
    /// and `goOn` says to keep trying; `waits` is told the error that began the wait, once. Other errors,
    /// and cancellation during a wait, end the attempts.
    public static func retrying<R>(
        while goOn: () -> Bool = { true }, waits: (any Error) -> Void = { _ in }, _ body: () async throws -> R
    ) async throws -> R {
        var waiting = false
        while true {
            do {
                return try await body()
            } catch where isTransient(error) && goOn() {
                if !waiting {
                    waits(error)
                    waiting = true
                }
                try await Task.sleep(for: .seconds(1))
            }
        }
    }
}

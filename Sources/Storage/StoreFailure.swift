/// What a store's errors mean for whoever retries: some pass by themselves.
public enum StoreFailure {
    /// Whether `error` may pass by itself, so that the same write succeeds later: LMDB's disk or map is
    /// full, or PostgreSQL cannot be reached.
    public static func isTransient(_ error: any Error) -> Bool {
        if let error = error as? LMDBError { return error.isOutOfSpace }
        return PostgresStoreError.unavailability(of: error) != nil
    }
}

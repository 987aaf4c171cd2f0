import Storage

/// Where tasks, models, pools, keys, users and settings are kept (`database`): LMDB in the data folder
/// when no URL is set (the embedded default), else the PostgreSQL database at `url`.
public struct DatabaseSettings: Sendable, Equatable {
    /// The PostgreSQL database (`database.url`, `SDBOX_DATABASE_URL`), as
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`; nil for LMDB.
    public var postgres: PostgresLocation?
    /// The most connections this box opens to it (`database.maxConnections`).
    public var maxConnections = 10
    /// How long a request waits for the database (a connection and its answer) before it counts as
    /// unreachable and the request is answered 503 (`database.timeoutSeconds`).
    public var timeoutSeconds = 10

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        if let url = try section.string("url") {
            do {
                postgres = url.isEmpty ? nil : try PostgresLocation(url: url)
            } catch let error as PostgresLocationError {
                throw ConfigurationError("\(section.name("url")): \(error.description)")
            }
        }
        maxConnections = try section.integer("maxConnections", in: 1...1000) ?? maxConnections
        timeoutSeconds = try section.integer("timeoutSeconds", in: 1...600) ?? timeoutSeconds
        try section.finish()
    }
}

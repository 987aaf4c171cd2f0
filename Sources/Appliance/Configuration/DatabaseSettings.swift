import Storage

/// Where tasks, models, pools, keys, users and settings are kept (`database`): LMDB in the data folder
/// when no URL is set (the embedded default), else the PostgreSQL database at `url`.
public struct DatabaseSettings: Sendable, Equatable {
    /// The PostgreSQL database (`database.url`, `SDBOX_DATABASE_URL`), as
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`; nil for LMDB.
    public var postgres: PostgresLocation?
    /// The most connections this box opens to it (`database.maxConnections`).
    public var maxConnections = 10

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
        try section.finish()
    }
}

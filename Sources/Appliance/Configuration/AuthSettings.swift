/// Who may call sdbox (`auth`).
public struct AuthSettings: Sendable, Equatable {
    /// Whether every request needs an API key (`auth.required`, `--require-api-keys`). Off is allowed only
    /// when listening on loopback.
    public var required = false
    /// Seconds a session from `POST /login` lives without use (`auth.sessionSeconds`); each use renews it.
    public var sessionSeconds = 3600

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        required = try section.boolean("required") ?? required
        sessionSeconds = try section.integer("sessionSeconds", in: 1...(365 * 86400)) ?? sessionSeconds
        try section.finish()
    }
}

/// Who may call sdbox (`auth`).
public struct AuthSettings: Sendable, Equatable {
    /// Whether every request needs an API key (`auth.required`, `--require-api-keys`). Off is allowed only
    /// when listening on loopback.
    public var required = false

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        required = try section.boolean("required") ?? required
        try section.finish()
    }
}

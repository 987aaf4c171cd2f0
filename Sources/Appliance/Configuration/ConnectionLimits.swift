/// Deadlines and caps for client connections (`connections` in the configuration). Without them a client
/// that sends a byte now and then holds a connection, and a thousand such clients hold the server.
public struct ConnectionLimits: Sendable, Equatable {
    /// Seconds a request's head may take, counted from the connection's opening or the end of the answer
    /// before it; so it also bounds how long an idle kept-alive connection stays open.
    public var headerTimeoutSeconds = 30
    /// Seconds a body may keep sdbox waiting before its bytes earn more time (see ``minBodyBytesPerSecond``).
    public var bodyTimeoutSeconds = 30
    /// Each byte of a body earns `1 / minBodyBytesPerSecond` seconds more waiting. Only time sdbox spends
    /// asking for the body counts: a body sdbox is not reading yet (its request waits for a worker, say)
    /// costs the client nothing.
    public var minBodyBytesPerSecond = 1024
    /// Open connections at once, over all clients.
    public var maxConnections = 4096
    /// Open connections at once from one IP address.
    public var maxConnectionsPerAddress = 512

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        headerTimeoutSeconds = try section.integer("headerTimeoutSeconds", in: 1...3600) ?? headerTimeoutSeconds
        bodyTimeoutSeconds = try section.integer("bodyTimeoutSeconds", in: 1...3600) ?? bodyTimeoutSeconds
        minBodyBytesPerSecond = try section.integer("minBodyBytesPerSecond", in: 1...(1 << 30)) ?? minBodyBytesPerSecond
        maxConnections = try section.integer("maxConnections", in: 1...1_000_000) ?? maxConnections
        maxConnectionsPerAddress = try section.integer("maxConnectionsPerAddress", in: 1...1_000_000) ?? maxConnectionsPerAddress
        try section.finish()
    }
}

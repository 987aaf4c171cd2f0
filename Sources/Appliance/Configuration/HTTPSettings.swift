/// How sdbox serves HTTP: the keys at the root of the configuration (`host`, `port`, `publicURL`,
/// `maxBodyBytes`, `urlExpirySeconds`, `requestIdleTimeoutSeconds`, `webRoot`).
public struct HTTPSettings: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 7860
    /// Base of the URLs handed out in `ossUrl` (e.g. `https://sd.example.com`); by default the
    /// request's own `Host`.
    public var publicURL: String?
    /// Largest request body, in bytes (model uploads have their own limit).
    public var maxBodyBytes = 64 << 20
    /// Lifetime of signed object URLs.
    public var urlExpirySeconds = 3600
    /// Seconds a kept-alive connection may send nothing before it is closed.
    public var requestIdleTimeoutSeconds = 60
    /// The folder of the admin web pages; by default the packaged `/usr/share/sdbox/web`, else `web/`
    /// of the source package or of the current directory.
    public var webRoot: String?

    public init() {}

    /// Reads its keys from the root of the configuration, leaving the others to the root's reader.
    mutating func read(_ root: inout KeyReader) throws {
        host = try root.string("host") ?? host
        port = try root.integer("port", in: 0...65535) ?? port
        publicURL = try root.string("publicURL") ?? publicURL
        maxBodyBytes = try root.integer("maxBodyBytes", in: 1024...(1 << 40)) ?? maxBodyBytes
        urlExpirySeconds = try root.integer("urlExpirySeconds", in: 1...(366 * 86400)) ?? urlExpirySeconds
        requestIdleTimeoutSeconds = try root.integer("requestIdleTimeoutSeconds", in: 1...3600) ?? requestIdleTimeoutSeconds
        webRoot = try root.string("webRoot") ?? webRoot
    }

    /// Whether sdbox listens on loopback only.
    public var isLoopback: Bool {
        ["127.0.0.1", "::1", "localhost"].contains(host) || host.hasPrefix("127.")
    }
}

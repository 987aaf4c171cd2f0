/// How task webhooks are delivered (`webhooks` in the configuration).
public struct WebhookSettings: Sendable, Equatable {
    /// The HMAC-SHA256 key of `X-SDBox-Signature` (`webhooks.secret`); by default the text of
    /// `<data-dir>/webhook-secret`, made at first start.
    public var secret: String?
    /// Tries per webhook before it is given up (`webhooks.maxAttempts`).
    public var maxAttempts = 8
    /// The wait before the first retry, doubled after each failed attempt (`webhooks.retrySeconds`)...
    public var retrySeconds = 5
    /// ...up to this wait between two attempts (`webhooks.maxRetrySeconds`).
    public var maxRetrySeconds = 600
    /// The longest one attempt may take (`webhooks.timeoutSeconds`).
    public var timeoutSeconds = 10
    /// Whether webhooks may go to loopback and private addresses (`webhooks.allowPrivateNetworks`); off, so
    /// that users of a shared box cannot reach into it (see ``OutboundTarget``).
    public var allowPrivateNetworks = false

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        secret = try section.string("secret") ?? secret
        maxAttempts = try section.integer("maxAttempts", in: 1...100) ?? maxAttempts
        retrySeconds = try section.integer("retrySeconds", in: 1...3600) ?? retrySeconds
        maxRetrySeconds = try section.integer("maxRetrySeconds", in: 1...86400) ?? maxRetrySeconds
        timeoutSeconds = try section.integer("timeoutSeconds", in: 1...600) ?? timeoutSeconds
        allowPrivateNetworks = try section.boolean("allowPrivateNetworks") ?? allowPrivateNetworks
        try section.finish()
    }

    /// The wait before attempt `attempt` (2 for the first retry): `retrySeconds`, doubling, capped.
    public func delay(beforeAttempt attempt: Int) -> Duration {
        let doublings = min(max(0, attempt - 2), 30)
        return .seconds(min(maxRetrySeconds, retrySeconds << doublings))
    }
}

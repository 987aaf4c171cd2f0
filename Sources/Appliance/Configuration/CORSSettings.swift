import Foundation

/// Which web pages on other origins may call the API from a browser (`cors`).
public struct CORSSettings: Sendable, Equatable {
    /// Origins allowed (`cors.allowOrigins`): `scheme://host[:port]` each, or `"*"` for any; empty (the
    /// default) answers no cross-origin request.
    public var allowOrigins: [String] = []

    public init() {}

    /// Whether a browser page of `origin` may read the answers; the value of `Access-Control-Allow-Origin`.
    public func allowedOrigin(_ origin: String) -> String? {
        if allowOrigins.contains("*") { return "*" }
        return allowOrigins.contains(origin) ? origin : nil
    }

    mutating func read(_ section: inout KeyReader) throws {
        if let origins = try section.stringArray("allowOrigins") {
            for origin in origins where origin != "*" {
                guard let url = URL(string: origin), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil,
                    url.path.isEmpty, url.query == nil, url.fragment == nil, url.user == nil
                else {
                    throw ConfigurationError("\(section.name("allowOrigins")): '\(origin)' is not an origin (scheme://host[:port], or \"*\")")
                }
            }
            allowOrigins = origins
        }
        try section.finish()
    }
}

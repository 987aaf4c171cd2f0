import Foundation

/// A passthrough call as a task keeps it (the task's `request`): what to send to the worker when the task
/// runs. JSON bodies are kept as JSON, without sdbox's own fields; other bodies in base64.
public struct PassthroughRequest: Codable, Sendable, Equatable {
    public var method: String
    /// Path and query, e.g. `/controlnet/detect` or `/sdapi/v1/cmd-flags`.
    public var path: String
    public var contentType: String?
    /// The other headers the call came with (hop-by-hop ones and sdbox's own left out).
    public var headers: [String: String]?
    /// The body when it is JSON.
    public var body: JSONValue?
    /// The body, base64-encoded, when it is not JSON.
    public var bodyBase64: String?

    public init(
        method: String, path: String, contentType: String? = nil, headers: [String: String]? = nil, body: JSONValue? = nil,
        bodyBase64: String? = nil
    ) {
        self.method = method
        self.path = path
        self.contentType = contentType
        self.headers = headers
        self.body = body
        self.bodyBase64 = bodyBase64
    }

    /// Reads a task's request.
    public init(_ json: JSONValue) throws {
        self = try json.decode(as: PassthroughRequest.self)
    }

    /// The request as a task stores it.
    public var json: JSONValue {
        get throws { try JSONValue(encoding: self) }
    }

    /// The bytes of the body to send, if any.
    public var bodyData: Data? {
        get throws {
            if let body { return try body.encoded() }
            return bodyBase64.flatMap { Data(base64Encoded: $0) }
        }
    }
}

import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SDBoxCore

/// A client's call to forward to a worker, read from its request: the worker's path and headers, the
/// body, and the checkpoint it names.
///
/// A JSON body (`application/json`, or no type or curl's form type when it parses as JSON) is read so that
/// sdbox can take out `stable_diffusion_model` (and `callback_url`, see ``Services/callback(taking:request:)``);
/// it is bounded by `maxBodyBytes`. Any
/// other body goes to the worker as a stream, never held whole in memory.
struct PassthroughCall {
    enum Body {
        case none
        case json(JSONValue)
        /// A body read whole that is not JSON.
        case bytes(ByteBuffer)
        /// The client's body, streamed; `length` from its `Content-Length`.
        case stream(RequestBody, length: Int?)

        /// Whether the body is read as it is sent (and so can be sent once only).
        var isStream: Bool {
            if case .stream = self { return true }
            return false
        }
    }

    let method: HTTPRequest.Method
    /// Path and query, as the worker gets them.
    let path: String
    /// The headers for the worker: the client's, without hop-by-hop ones, `Host`, `Content-Length`,
    /// `Authorization` (sdbox's credential) and sdbox's own headers.
    let headers: HTTPFields
    var body: Body
    /// The checkpoint the call names (`X-SD-Model`, else `stable_diffusion_model` in the body).
    let model: String?

    /// Headers that are never forwarded (RFC 9110 hop-by-hop headers and those sdbox sets or owns).
    static let dropped: Set<String> = Set([
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "expect", "host", "content-length", "authorization",
    ] + HTTPField.Name.sdboxRequestHeaders.map(\.canonicalName))

    /// Reads the call to `path` (the request's own, as ``WorkerPath`` read it); a JSON body is read up to
    /// `limit` bytes (413 over it).
    init(request: Request, path workerPath: WorkerPath, limit: Int) async throws {
        method = request.method
        var path = workerPath.encoded
        if let query = request.uri.query, !query.isEmpty { path += "?" + query }
        self.path = path
        headers = Self.forwardable(request.headers)
        let length = request.headers[.contentLength].flatMap { Int($0) }
        let hasBody = (length ?? 0) > 0 || request.headers[.transferEncoding] != nil
        let type = request.headers[.contentType]?.lowercased() ?? ""
        var model = request.headers[.sdModel]
        if !hasBody {
            body = .none
        } else if type.isEmpty || type.contains("json") || type.hasPrefix("application/x-www-form-urlencoded") {
            let buffer = try await Request.collect(request.body, declaredLength: request.headers[.contentLength], limit: limit)
            if var json = try? JSONValue(parsing: buffer.readableBytesView) {
                if let named = json["stable_diffusion_model"] {
                    json["stable_diffusion_model"] = nil
                    model = model ?? named.stringValue.flatMap { $0.isEmpty ? nil : $0 }
                }
                body = .json(json)
            } else {
                body = .bytes(buffer)
            }
        } else {
            body = .stream(request.body, length: length)
        }
        self.model = model
    }

    /// The call as a task keeps it, its body read whole (up to `limit` bytes).
    func persisted(limit: Int) async throws -> PassthroughRequest {
        var request = PassthroughRequest(method: method.rawValue, path: path)
        var others: [String: String] = [:]
        for field in headers {
            if field.name == .contentType {
                request.contentType = field.value
            } else {
                others[field.name.canonicalName] = others[field.name.canonicalName].map { $0 + ", " + field.value } ?? field.value
            }
        }
        request.headers = others.isEmpty ? nil : others
        switch body {
        case .none:
            break
        case .json(let json):
            request.contentType = "application/json"
            request.body = json
        case .bytes(let buffer):
            request.bodyBase64 = Data(buffer.readableBytesView).base64EncodedString()
        case .stream(let stream, _):
            request.bodyBase64 = Data(try await Request.collect(stream, declaredLength: nil, limit: limit).readableBytesView).base64EncodedString()
        }
        return request
    }

    static func forwardable(_ fields: HTTPFields) -> HTTPFields {
        // Headers named in `Connection` are hop-by-hop too.
        let named = Set(fields[values: .connection].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
        return HTTPFields(fields.filter { !dropped.contains($0.name.canonicalName) && !named.contains($0.name.canonicalName) })
    }
}

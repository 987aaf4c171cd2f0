import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ObjectStore
import SDBoxCore
import Scheduler
import Storage

extension APIError: HTTPResponseError {
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        .json(body, status: status)
    }
}

/// Turns every error a route throws into the JSON error shape, so no client ever sees an empty or
/// HTML error body, and logs the unexpected ones.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError {
            let detail = error.body ?? ""
            switch error.status {
            case .notFound: throw APIError(.notFound, "not found", detail: detail.isEmpty ? "no route for \(request.method) \(request.uri.path)" : detail)
            case .contentTooLarge: throw APIError(.contentTooLarge, "request body too large", detail: detail)
            default: throw APIError(error.status, error.status.reasonPhrase, detail: detail)
            }
        } catch let error as any HTTPResponseError {
            throw APIError(error.status, error.status.reasonPhrase, detail: ErrorSummary(error).description)
        } catch let error as LMDBError where error.isOutOfSpace {
            context.logger.error("database full", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            throw APIError(.insufficientStorage, "disk full", detail: "the database cannot grow: \(error); nothing was changed")
        } catch let error as ObjectStoreError where error.isDiskFull {
            throw APIError(.insufficientStorage, "disk full", detail: "\(error)")
        } catch {
            let summary = ErrorSummary(error)
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path.prefix(200))", "error": "\(summary)"])
            throw APIError(.internalServerError, "internal error", detail: summary.description)
        }
    }
}

extension Response {
    /// A JSON response.
    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        let bytes = (try? value.encodedBytes()) ?? Array("null".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// A JSON response from an `Encodable` value.
    static func json(encoding value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        .json(try JSONValue(encoding: value), status: status)
    }
}

extension Request {
    /// The body parsed as JSON, refused with 400 when it is not JSON or past ``JSONLimits``, and 413 when
    /// it is over `limit` bytes. A body over ``largeBodyBytes`` is parsed on ``CPUWork``'s thread.
    func jsonBody(limit: Int) async throws -> JSONValue {
        let buffer = try await collectBody(limit: limit)
        guard buffer.readableBytes > 0 else {
            throw APIError(.badRequest, "invalid request", detail: "the request body is empty; a JSON object is required")
        }
        do {
            if buffer.readableBytes > Self.largeBodyBytes {
                return try await CPUWork.run { try JSONValue(parsing: buffer.readableBytesView) }
            }
            return try JSONValue(parsing: buffer.readableBytesView)
        } catch {
            throw APIError(.badRequest, "invalid JSON", detail: Self.describe(error))
        }
    }

    /// Bodies larger than this are parsed off the threads that answer requests.
    static let largeBodyBytes = 256 << 10

    /// The whole body, refused with 413 when it is over `limit` bytes.
    func collectBody(limit: Int) async throws -> ByteBuffer {
        try await Self.collect(body, declaredLength: headers[.contentLength], limit: limit)
    }

    /// A body read whole, refused with 413 when it is over `limit` bytes: at once, before any of it is
    /// read, when its `Content-Length` says so, else as soon as it passes the limit.
    static func collect(_ body: RequestBody, declaredLength: String?, limit: Int) async throws -> ByteBuffer {
        if let declaredLength, declaredLength.utf8.count > 18 || (Int(declaredLength) ?? 0) > limit {
            throw APIError(.contentTooLarge, "request body too large", detail: "Content-Length \(declaredLength.prefix(32)) is over the limit of \(limit) bytes")
        }
        do {
            return try await body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "request body too large", detail: "the body is over the limit of \(limit) bytes")
        }
    }

    /// The body as a JSON object.
    func jsonObject(limit: Int) async throws -> [String: JSONValue] {
        guard let object = try await jsonBody(limit: limit).objectValue else {
            throw APIError(.badRequest, "invalid request", detail: "the request body must be a JSON object")
        }
        return object
    }

    static func describe(_ error: any Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error {
            let underlying = (context.underlyingError as? NSError)?.userInfo[NSDebugDescriptionErrorKey] as? String
            return underlying ?? context.debugDescription
        }
        return "\(error)"
    }
}

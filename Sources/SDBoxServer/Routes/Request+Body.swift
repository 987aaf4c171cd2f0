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

import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SDBoxCore

extension Response {
    /// The encoder of every typed JSON answer: compact, keys sorted, slashes unescaped.
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// A JSON answer: `value` (a typed answer, or a document kept as a ``JSONValue``) encoded with sorted keys.
    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        try json(bytes: encoder.encode(value), status: status)
    }

    /// The bytes of an `Encodable` value as JSON, as ``json(_:status:)`` would answer them.
    static func jsonBytes(_ value: some Encodable) throws -> Data {
        try encoder.encode(value)
    }

    private static func json(bytes: some Sequence<UInt8>, status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

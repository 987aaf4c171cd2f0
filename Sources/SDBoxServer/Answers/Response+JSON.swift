import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SDBoxCore

extension Response {
    /// A JSON answer: `value` (a typed answer, or a document kept as a ``JSONValue``) written compact with
    /// sorted keys, as `JSONEncoder` with `.sortedKeys` would, through ``JSONValueEncoder`` and
    /// ``JSONWriter`` (2x the polls a second of `JSONEncoder`: docs/benchmarks.md, "JSON answers").
    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let bytes = try jsonBytes(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// A JSON answer already encoded (a kept answer, a worker's answer passed on as it came).
    static func encodedJSON(_ bytes: some Sequence<UInt8>) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// The bytes of an `Encodable` value as JSON, as ``json(_:status:)`` answers them.
    static func jsonBytes(_ value: some Encodable) throws -> [UInt8] {
        let document = try value as? JSONValue ?? JSONValue(encoding: value)
        return try document.encodedBytes()
    }
}

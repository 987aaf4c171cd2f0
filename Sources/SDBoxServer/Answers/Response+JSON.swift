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

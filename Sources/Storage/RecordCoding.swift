import Foundation

/// JSON encoding of stored records, the same in every store: LMDB keeps the bytes, PostgreSQL a `jsonb`
/// of them. Dates are milliseconds since 1970.
enum RecordCoding {
    static func encode(_ value: some Encodable) throws -> Data {
        try JSONEncoder.records.encode(value)
    }

    /// The JSON text of a record, for a `jsonb` parameter.
    static func text(_ value: some Encodable) throws -> String {
        String(decoding: try encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        try JSONDecoder.records.decode(T.self, from: Data(bytes))
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try JSONDecoder.records.decode(T.self, from: Data(bytes))
    }

    static func decode<T: Decodable>(_ type: T.Type, from text: String) throws -> T {
        try JSONDecoder.records.decode(T.self, from: Data(text.utf8))
    }
}

extension JSONEncoder {
    static var records: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return encoder
    }
}

extension JSONDecoder {
    static var records: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return decoder
    }
}

import Foundation

/// Any JSON document, kept as a value so request bodies can be validated and forwarded without losing fields.
///
/// A1111 request bodies carry fields sdbox does not model (`alwayson_scripts`, extension settings, ...):
/// they are decoded into a ``JSONValue``, the fields sdbox needs are read from it, and the rest travels
/// to the worker untouched.
///
/// Numbers compare by value: `.integer(1)` equals `.number(1.0)`, as they do in JSON.
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])
}

extension JSONValue: Hashable {
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case (.bool(let a), .bool(let b)): a == b
        case (.integer(let a), .integer(let b)): a == b
        case (.integer, .number), (.number, .integer), (.number, .number): lhs.doubleValue == rhs.doubleValue
        case (.string(let a), .string(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.object(let a), .object(let b)): a == b
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let value): hasher.combine(value)
        case .integer, .number: hasher.combine(doubleValue)
        case .string(let value): hasher.combine(value)
        case .array(let value): hasher.combine(value)
        case .object(let value): hasher.combine(value)
        }
    }
}

extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        // Each kind that does not match costs a thrown error: the commonest (strings, then numbers) first.
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

extension JSONValue {
    /// Parses a JSON document from raw bytes; one past ``JSONLimits`` throws a ``JSONLimitError``.
    public init(parsing bytes: some Collection<UInt8>) throws {
        try JSONLimits.check(bytes)
        if let parsed = try bytes.withContiguousStorageIfAvailable({ buffer throws(JSONParser.Failure) in try JSONParser.parse(buffer) }) {
            self = parsed
        } else {
            self = try Array(bytes).withUnsafeBufferPointer { buffer throws(JSONParser.Failure) in try JSONParser.parse(buffer) }
        }
    }

    /// The document as compact JSON bytes, keys sorted. Throws for a number JSON cannot hold (NaN, infinity).
    public func encoded() throws -> Data {
        Data(try encodedBytes())
    }

    /// The document as compact JSON bytes, keys sorted, without the copy into `Data`.
    public func encodedBytes() throws -> [UInt8] {
        var writer = JSONWriter()
        try writer.write(self)
        return writer.bytes
    }

    /// Decodes the document into a `Decodable` type.
    public func decode<T: Decodable>(as type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: encoded())
    }

    /// Encodes an `Encodable` value into a ``JSONValue``, as `JSONEncoder` would write it (see
    /// ``JSONValueEncoder``, which is 2x faster than `JSONEncoder` on the answers sdbox sends).
    public init(encoding value: some Encodable) throws {
        self = try JSONValueEncoder().encode(value)
    }

    public subscript(key: String) -> JSONValue? {
        get {
            guard case .object(let object) = self else { return nil }
            return object[key]
        }
        set {
            guard case .object(var object) = self else { return }
            object[key] = newValue
            self = .object(object)
        }
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The value as an integer, accepting a JSON number with no fractional part.
    public var integerValue: Int64? {
        switch self {
        case .integer(let value): return value
        case .number(let value) where value.rounded() == value && abs(value) < 9.0e18: return Int64(value)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .integer(let value): return Double(value)
        case .number(let value): return value
        default: return nil
        }
    }

    public var isNull: Bool { self == .null }

    /// About how many bytes the value takes stored as JSON: its strings' UTF-8 bytes and a few bytes of
    /// syntax per value (escapes not counted). What a stored request costs, for per-user limits.
    public var storageSize: Int {
        switch self {
        case .null, .bool, .integer, .number: 8
        case .string(let value): value.utf8.count + 2
        case .array(let values): values.reduce(2) { $0 + $1.storageSize + 1 }
        case .object(let members): members.reduce(2) { $0 + $1.key.utf8.count + 4 + $1.value.storageSize }
        }
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .null }
}

import Foundation

/// Encodes an `Encodable` value straight into a ``JSONValue``, as `JSONEncoder` with its default strategies
/// would write it (`Data` as base64, `URL` as its string, `Date` as seconds since 2001), without writing
/// JSON bytes and parsing them back. With ``JSONWriter`` it is how every typed answer is written: measured
/// side by side (docs/benchmarks.md, "JSON answers"), Foundation's `JSONEncoder` halved the status polls
/// a server answers.
struct JSONValueEncoder {
    func encode(_ value: some Encodable) throws -> JSONValue {
        try ValueEncoder.box(value, codingPath: [])
    }
}

/// A value under construction: containers write into it after they are handed out, so it is a reference.
private final class PartialValue {
    var scalar: JSONValue?
    var object: [String: PartialValue]?
    var array: [PartialValue]?

    init(_ scalar: JSONValue? = nil) {
        self.scalar = scalar
    }

    /// The finished value; a value nothing was encoded into is `{}`, as `JSONEncoder` writes it.
    var value: JSONValue {
        if let scalar { return scalar }
        if let array { return .array(array.map(\.value)) }
        return .object((object ?? [:]).mapValues(\.value))
    }
}

private struct IndexKey: CodingKey {
    let intValue: Int?
    let stringValue: String

    init(_ index: Int) {
        intValue = index
        stringValue = "Index \(index)"
    }

    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.init(intValue) }
}

/// The key `superEncoder()` writes under, whatever the container's keys are.
private struct SuperKey: CodingKey {
    var stringValue: String { "super" }
    var intValue: Int? { nil }
    init() {}
    init?(stringValue: String) { nil }
    init?(intValue: Int) { nil }
}

private struct ValueEncoder: Encoder {
    let partial: PartialValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    /// `value` as a ``JSONValue``, with `JSONEncoder`'s special cases.
    static func box(_ value: some Encodable, codingPath: [any CodingKey]) throws -> JSONValue {
        switch value {
        case let value as JSONValue: return value
        case let value as Data: return .string(value.base64EncodedString())
        case let value as URL: return .string(value.absoluteString)
        case let value as Decimal: return .number(Double(value.description) ?? NSDecimalNumber(decimal: value).doubleValue)
        default:
            let partial = PartialValue()
            try value.encode(to: ValueEncoder(partial: partial, codingPath: codingPath))
            return partial.value
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if partial.object == nil { partial.object = [:] }
        return KeyedEncodingContainer(KeyedContainer<Key>(partial: partial, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if partial.array == nil { partial.array = [] }
        return UnkeyedContainer(partial: partial, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueContainer(partial: partial, codingPath: codingPath)
    }
}

/// The ``JSONValue`` of a number, refusing what JSON cannot hold as `JSONEncoder` does.
private func number(_ value: Double, codingPath: [any CodingKey]) throws -> JSONValue {
    guard value.isFinite else {
        throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "\(value) is not a JSON number"))
    }
    return .number(value)
}

private func integer(_ value: some BinaryInteger) -> JSONValue {
    Int64(exactly: value).map(JSONValue.integer) ?? .number(Double(value))
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let partial: PartialValue
    let codingPath: [any CodingKey]

    private func set(_ value: JSONValue, _ key: Key) {
        partial.object![key.stringValue] = PartialValue(value)
    }

    mutating func encodeNil(forKey key: Key) throws { set(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { set(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { set(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { set(try number(value, codingPath: codingPath + [key]), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        set(try number(Double("\(value)") ?? Double(value), codingPath: codingPath + [key]), key)
    }
    mutating func encode(_ value: Int, forKey key: Key) throws { set(integer(value), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { set(integer(value), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { set(integer(value), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { set(integer(value), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { set(integer(value), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { set(integer(value), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { set(integer(value), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { set(integer(value), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { set(integer(value), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { set(integer(value), key) }
    mutating func encode(_ value: some Encodable, forKey key: Key) throws {
        set(try ValueEncoder.box(value, codingPath: codingPath + [key]), key)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let child = PartialValue()
        partial.object![key.stringValue] = child
        return ValueEncoder(partial: child, codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = PartialValue()
        partial.object![key.stringValue] = child
        return ValueEncoder(partial: child, codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { encoder(under: SuperKey()) }

    mutating func superEncoder(forKey key: Key) -> any Encoder { encoder(under: key) }

    private func encoder(under key: any CodingKey) -> any Encoder {
        let child = PartialValue()
        partial.object![key.stringValue] = child
        return ValueEncoder(partial: child, codingPath: codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let partial: PartialValue
    let codingPath: [any CodingKey]
    var count: Int { partial.array!.count }

    private var nextPath: [any CodingKey] { codingPath + [IndexKey(count)] }

    private func append(_ value: JSONValue) {
        partial.array!.append(PartialValue(value))
    }

    mutating func encodeNil() throws { append(.null) }
    mutating func encode(_ value: Bool) throws { append(.bool(value)) }
    mutating func encode(_ value: String) throws { append(.string(value)) }
    mutating func encode(_ value: Double) throws { append(try number(value, codingPath: nextPath)) }
    mutating func encode(_ value: Float) throws { append(try number(Double("\(value)") ?? Double(value), codingPath: nextPath)) }
    mutating func encode(_ value: Int) throws { append(integer(value)) }
    mutating func encode(_ value: Int8) throws { append(integer(value)) }
    mutating func encode(_ value: Int16) throws { append(integer(value)) }
    mutating func encode(_ value: Int32) throws { append(integer(value)) }
    mutating func encode(_ value: Int64) throws { append(integer(value)) }
    mutating func encode(_ value: UInt) throws { append(integer(value)) }
    mutating func encode(_ value: UInt8) throws { append(integer(value)) }
    mutating func encode(_ value: UInt16) throws { append(integer(value)) }
    mutating func encode(_ value: UInt32) throws { append(integer(value)) }
    mutating func encode(_ value: UInt64) throws { append(integer(value)) }
    mutating func encode(_ value: some Encodable) throws { append(try ValueEncoder.box(value, codingPath: nextPath)) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let child = PartialValue()
        let path = nextPath
        partial.array!.append(child)
        return ValueEncoder(partial: child, codingPath: path).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let child = PartialValue()
        let path = nextPath
        partial.array!.append(child)
        return ValueEncoder(partial: child, codingPath: path).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        let child = PartialValue()
        let path = nextPath
        partial.array!.append(child)
        return ValueEncoder(partial: child, codingPath: path)
    }
}

private struct SingleValueContainer: SingleValueEncodingContainer {
    let partial: PartialValue
    let codingPath: [any CodingKey]

    private func set(_ value: JSONValue) {
        partial.scalar = value
    }

    mutating func encodeNil() throws { set(.null) }
    mutating func encode(_ value: Bool) throws { set(.bool(value)) }
    mutating func encode(_ value: String) throws { set(.string(value)) }
    mutating func encode(_ value: Double) throws { set(try number(value, codingPath: codingPath)) }
    mutating func encode(_ value: Float) throws { set(try number(Double("\(value)") ?? Double(value), codingPath: codingPath)) }
    mutating func encode(_ value: Int) throws { set(integer(value)) }
    mutating func encode(_ value: Int8) throws { set(integer(value)) }
    mutating func encode(_ value: Int16) throws { set(integer(value)) }
    mutating func encode(_ value: Int32) throws { set(integer(value)) }
    mutating func encode(_ value: Int64) throws { set(integer(value)) }
    mutating func encode(_ value: UInt) throws { set(integer(value)) }
    mutating func encode(_ value: UInt8) throws { set(integer(value)) }
    mutating func encode(_ value: UInt16) throws { set(integer(value)) }
    mutating func encode(_ value: UInt32) throws { set(integer(value)) }
    mutating func encode(_ value: UInt64) throws { set(integer(value)) }
    mutating func encode(_ value: some Encodable) throws { set(try ValueEncoder.box(value, codingPath: codingPath)) }
}

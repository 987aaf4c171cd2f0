/// How deep and how wide a JSON document sdbox reads may be. A document past either is refused before it
/// is decoded: a body nested 500 levels deep decodes, but the task that holds it could not be read back
/// (Foundation's decoder stops at 512 levels), and millions of keys cost memory far beyond their bytes.
public enum JSONLimits {
    /// The deepest nesting of arrays and objects (A1111's own bodies nest 5 or 6 levels).
    public static let maxDepth = 64
    /// The most object keys in one document, counted over all its objects.
    public static let maxKeys = 100_000

    /// Checks `bytes` in one pass, without decoding them; malformed JSON is left for the decoder to refuse.
    /// Only UTF-8 is read: a byte-order mark of UTF-16 or UTF-32, or a NUL byte (which no UTF-8 JSON holds
    /// and every UTF-16 or UTF-32 JSON does), is refused, since Foundation's decoder would read those
    /// encodings too, past this check.
    public static func check(_ bytes: some Collection<UInt8>) throws(JSONLimitError) {
        if let first = bytes.first, first == 0xFE || first == 0xFF { throw .notUTF8 }
        var depth = 0
        var keys = 0
        var inString = false
        var escaped = false
        for byte in bytes {
            if inString {
                if byte == 0 { throw .notUTF8 }
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case 0:
                throw .notUTF8
            case UInt8(ascii: "\""):
                inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > maxDepth { throw .tooDeep }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth -= 1
            case UInt8(ascii: ":"):
                keys += 1
                if keys > maxKeys { throw .tooManyKeys }
            default:
                break
            }
        }
    }
}

/// A JSON document past ``JSONLimits``.
public enum JSONLimitError: Error, Sendable, CustomStringConvertible {
    case tooDeep
    case tooManyKeys
    case notUTF8

    public var description: String {
        switch self {
        case .tooDeep: "the JSON nests arrays and objects more than \(JSONLimits.maxDepth) levels deep"
        case .tooManyKeys: "the JSON holds more than \(JSONLimits.maxKeys) object keys"
        case .notUTF8: "the JSON is not UTF-8"
        }
    }
}

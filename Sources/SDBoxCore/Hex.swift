extension Sequence<UInt8> {
    /// Lowercase hexadecimal digits of the bytes (hashes, signatures, secrets).
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(underestimatedCount * 2)
        for byte in self {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

extension StringProtocol {
    /// Whether the text is a sha256 in hexadecimal: 64 hex digits, either case.
    public var isSHA256Hex: Bool {
        utf8.count == 64 && utf8.allSatisfy { (48...57).contains($0) || (65...70).contains($0) || (97...102).contains($0) }
    }
}

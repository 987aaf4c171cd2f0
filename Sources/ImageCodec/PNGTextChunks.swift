import Foundation

/// Reads and writes PNG text chunks (`tEXt` and `iTXt`), where A1111 stores a generation's infotext under
/// the key `parameters`.
public enum PNGTextChunks {
    /// The text chunks of a PNG, by keyword. Compressed chunks (`zTXt`, compressed `iTXt`) are skipped.
    public static func read(from data: Data) -> [String: String] {
        let bytes = [UInt8](data)
        guard PNGCodec.isPNG(bytes) else { return [:] }
        var result: [String: String] = [:]
        var offset = 8
        while offset + 12 <= bytes.count {
            let length = Int(bigEndian32(bytes, at: offset))
            let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
            let start = offset + 8
            guard length >= 0, start + length + 4 <= bytes.count else { break }
            let body = Array(bytes[start..<(start + length)])
            if let split = body.firstIndex(of: 0) {
                let key = String(decoding: body[..<split], as: UTF8.self)
                if type == "tEXt" {
                    result[key] = String(body[(split + 1)...].map { Character(Unicode.Scalar($0)) })
                } else if type == "iTXt", split + 2 < body.count, body[split + 1] == 0 {
                    // keyword \0 compression-flag compression-method language \0 translated-keyword \0 text
                    var rest = body[(split + 3)...]
                    for _ in 0..<2 {
                        guard let end = rest.firstIndex(of: 0) else { rest = []; break }
                        rest = rest[(end + 1)...]
                    }
                    result[key] = String(decoding: rest, as: UTF8.self)
                }
            }
            if type == "IEND" { break }
            offset = start + length + 4
        }
        return result
    }

    /// The PNG with the text chunks inserted right after its header chunk: `tEXt` for Latin-1 text,
    /// `iTXt` (UTF-8) otherwise.
    public static func inserting(_ text: [(key: String, value: String)], into png: Data) -> Data {
        guard !text.isEmpty, png.count > 33 else { return png }
        var chunks = Data()
        for (key, value) in text {
            let latin1 = value.unicodeScalars.allSatisfy { $0.value < 256 }
            var body = [UInt8](key.utf8) + [0]
            if latin1 {
                body += value.unicodeScalars.map { UInt8($0.value) }
                chunks.append(chunk(type: "tEXt", body: body))
            } else {
                body += [0, 0, 0, 0] + [UInt8](value.utf8)
                chunks.append(chunk(type: "iTXt", body: body))
            }
        }
        var result = png.prefix(33)  // signature (8) + IHDR chunk (25)
        result.append(chunks)
        result.append(png.dropFirst(33))
        return Data(result)
    }

    static func chunk(type: String, body: [UInt8]) -> Data {
        var out = Data()
        withUnsafeBytes(of: UInt32(body.count).bigEndian) { out.append(contentsOf: $0) }
        let typed = [UInt8](type.utf8) + body
        out.append(contentsOf: typed)
        withUnsafeBytes(of: CRC32.checksum(typed).bigEndian) { out.append(contentsOf: $0) }
        return out
    }

    static func bigEndian32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        bytes[offset..<(offset + 4)].reduce(0) { $0 << 8 | UInt32($1) }
    }
}

/// The CRC-32 used by PNG chunks.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

import Foundation

/// Reads the tar archives ``TarWriter`` writes, member by member, streaming: ``next()`` gives a member's
/// header, then ``copyContents(to:)`` or ``readContents(limit:)`` its bytes (skipped if unread).
///
/// It reads ustar headers (checksums checked) with pax extended headers (`path`, `size`, `mtime`; a global
/// header is skipped), and refuses what an sdbox backup never holds and extracting could misuse: links,
/// devices, folders as members, GNU extensions, and paths that are absolute or have `..` (see
/// ``TarEntry/problem(withPath:)``).
public final class TarReader {
    let fd: Int32
    /// Contents of the current member not read yet, and the padding after them.
    var remaining: Int64 = 0
    var padding = 0
    var buffer = [UInt8](repeating: 0, count: 1 << 20)

    /// A reader of the archive open at `fileDescriptor`, which stays the caller's to close.
    public init(fileDescriptor: Int32) {
        self.fd = fileDescriptor
    }

    /// The next member's header, or nil at the end of the archive.
    public func next() throws -> TarEntry? {
        try skip(remaining + Int64(padding))
        remaining = 0
        padding = 0
        var extended: [String: String] = [:]
        while true {
            guard let block = try readBlock(), block.contains(where: { $0 != 0 }) else { return nil }
            try Self.checkChecksum(block)
            let size = try Self.octal(block, 124, 12)
            let type = block[156]
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "g"):
                guard size <= 1 << 20 else { throw TarError("a pax header of \(size) bytes") }
                let body = try readExactly(Int(size))
                try skip(Int64(Self.padding(after: size)))
                if type == UInt8(ascii: "x") { extended.merge(try Self.paxRecords(body)) { $1 } }
            case 0, UInt8(ascii: "0"):
                var entry = TarEntry(
                    path: Self.string(block, 0, 100), mode: UInt32(try Self.octal(block, 100, 8)) & 0o7777, size: size,
                    modified: timespec(tv_sec: Int(try Self.octal(block, 136, 12)), tv_nsec: 0)
                )
                if block[257..<262].elementsEqual("ustar".utf8), block[345] != 0 {
                    entry.path = Self.string(block, 345, 155) + "/" + entry.path
                }
                if let path = extended["path"] { entry.path = path }
                if let text = extended["size"] {
                    guard let size = Int64(text), size >= 0 else { throw TarError("a pax size of '\(text)'") }
                    entry.size = size
                }
                if let text = extended["mtime"] { entry.modified = try Self.time(text) }
                if let problem = TarEntry.problem(withPath: entry.path) { throw TarError("unsafe path '\(entry.path)' in the archive: \(problem)") }
                remaining = entry.size
                padding = Self.padding(after: entry.size)
                return entry
            default:
                let path = Self.string(block, 0, 100)
                throw TarError("'\(path)' is a \(Self.kindName(type)), which an sdbox backup never holds")
            }
        }
    }

    /// Up to `limit` bytes of the current member's contents, all of them if it has no more; an error if
    /// it has more.
    public func readContents(limit: Int) throws -> Data {
        guard remaining <= Int64(limit) else { throw TarError("a member of \(remaining) bytes, more than the \(limit) expected") }
        let data = Data(try readExactly(Int(remaining)))
        remaining = 0
        return data
    }

    /// Writes the current member's contents to `output`, streaming.
    public func copyContents(to output: Int32) throws {
        while remaining > 0 {
            let wanted = Int(min(Int64(buffer.count), remaining))
            try buffer.withUnsafeMutableBytes { chunk in
                try Self.fill(fd, UnsafeMutableRawBufferPointer(rebasing: chunk[0..<wanted]))
                var offset = 0
                while offset < wanted {
                    let n = write(output, chunk.baseAddress! + offset, wanted - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw TarError.system("write")
                    }
                    offset += n
                }
            }
            remaining -= Int64(wanted)
        }
    }

    // MARK: Reading

    func readBlock() throws -> [UInt8]? {
        var block = [UInt8](repeating: 0, count: tarBlockSize)
        let count = try block.withUnsafeMutableBytes { try Self.fill(fd, $0, allowingEnd: true) }
        if count == 0 { return nil }
        guard count == tarBlockSize else { throw TarError("the archive ends inside a header") }
        return block
    }

    func readExactly(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        _ = try bytes.withUnsafeMutableBytes { try Self.fill(fd, $0) }
        return bytes
    }

    func skip(_ count: Int64) throws {
        var left = count
        while left > 0 {
            let wanted = Int(min(Int64(buffer.count), left))
            _ = try buffer.withUnsafeMutableBytes { try Self.fill(fd, UnsafeMutableRawBufferPointer(rebasing: $0[0..<wanted])) }
            left -= Int64(wanted)
        }
    }

    /// Reads until `buffer` is full; returns how many bytes were read, which is less only at the end of
    /// the file and only when `allowingEnd` (otherwise a short archive is an error).
    @discardableResult
    static func fill(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, allowingEnd: Bool = false) throws -> Int {
        var offset = 0
        while offset < buffer.count {
            let n = read(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw TarError.system("read")
            }
            if n == 0 {
                if allowingEnd { return offset }
                throw TarError("the archive is cut short")
            }
            offset += n
        }
        return offset
    }

    // MARK: Fields

    static func padding(after size: Int64) -> Int {
        Int((Int64(tarBlockSize) - size % Int64(tarBlockSize)) % Int64(tarBlockSize))
    }

    static func string(_ block: [UInt8], _ offset: Int, _ width: Int) -> String {
        let field = block[offset..<(offset + width)]
        return String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// An octal number field (spaces and NULs around it ignored); GNU's base-256 sizes are refused.
    static func octal(_ block: [UInt8], _ offset: Int, _ width: Int) throws -> Int64 {
        guard block[offset] & 0x80 == 0 else { throw TarError("a base-256 number (a GNU extension)") }
        let text = string(block, offset, width).trimmingCharacters(in: .whitespaces)
        if text.isEmpty { return 0 }
        guard let value = Int64(text, radix: 8), value >= 0 else { throw TarError("not a tar archive (a field reads '\(text)')") }
        return value
    }

    static func checkChecksum(_ block: [UInt8]) throws {
        let stored = try octal(block, 148, 8)
        var sum: Int64 = 0
        for (index, byte) in block.enumerated() { sum += (148..<156).contains(index) ? 32 : Int64(byte) }
        guard stored == sum else { throw TarError("not a tar archive (a header's checksum is wrong)") }
    }

    /// The `key=value` records of a pax header.
    static func paxRecords(_ body: [UInt8]) throws -> [String: String] {
        var records: [String: String] = [:]
        var rest = body[...]
        while !rest.isEmpty {
            guard let space = rest.firstIndex(of: UInt8(ascii: " ")),
                let length = Int(String(decoding: rest[rest.startIndex..<space], as: UTF8.self)), length > 0, length <= rest.count,
                rest[rest.startIndex + length - 1] == UInt8(ascii: "\n")
            else { throw TarError("a damaged pax header") }
            let record = rest[(space + 1)..<(rest.startIndex + length - 1)]
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else { throw TarError("a damaged pax header") }
            records[String(decoding: record[record.startIndex..<equals], as: UTF8.self)] = String(decoding: record[(equals + 1)...], as: UTF8.self)
            rest = rest[(rest.startIndex + length)...]
        }
        return records
    }

    /// A pax time, `seconds[.fraction]`.
    static func time(_ text: String) throws -> timespec {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let seconds = Int(parts[0]) else { throw TarError("a pax mtime of '\(text)'") }
        guard parts.count == 2 else { return timespec(tv_sec: seconds, tv_nsec: 0) }
        let digits = String(parts[1].prefix(9))
        guard !digits.isEmpty, let fraction = Int(digits), fraction >= 0 else { throw TarError("a pax mtime of '\(text)'") }
        return timespec(tv_sec: seconds, tv_nsec: fraction * Int(pow(10, Double(9 - digits.count))))
    }

    static func kindName(_ type: UInt8) -> String {
        switch type {
        case UInt8(ascii: "1"): "hard link"
        case UInt8(ascii: "2"): "symbolic link"
        case UInt8(ascii: "3"), UInt8(ascii: "4"): "device"
        case UInt8(ascii: "5"): "folder entry"
        case UInt8(ascii: "6"): "FIFO"
        default: "member of type '\(Character(Unicode.Scalar(type)))'"
        }
    }
}

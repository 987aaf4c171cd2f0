import Foundation

/// Writes a POSIX tar archive (ustar, with pax extended headers where ustar falls short) to a file
/// descriptor, streaming: a file's contents are copied through a 1 MiB buffer, never held whole.
///
/// A member gets a pax header (`x`) before its ustar header when its path is longer than ustar's 100
/// bytes, its size reaches 8 GiB (ustar's 11 octal digits), or its modification time has a fraction of a
/// second; GNU tar, bsdtar and Python's tarfile all read these. Only regular files are written (folders
/// are implied by their paths).
public final class TarWriter {
    let fd: Int32
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    /// Bytes written so far.
    public private(set) var bytesWritten: Int64 = 0

    /// A writer appending to `fileDescriptor`, which stays the caller's to sync and close.
    public init(fileDescriptor: Int32) {
        self.fd = fileDescriptor
    }

    /// Adds `data` as the file `path`.
    public func add(_ data: Data, as path: String, mode: UInt32 = 0o644, modified: timespec) throws {
        try writeHeader(TarEntry(path: path, mode: mode, size: Int64(data.count), modified: modified))
        try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in try write(bytes) }
        try pad(Int64(data.count))
    }

    /// Adds the regular file at `source` (following a symbolic link) as `path`, with its permissions and
    /// modification time, and returns its size. Returns nil, adding nothing, when the file is gone (removed
    /// since it was listed) or is not a regular file. The size is taken when the file is opened; a file replaced by a
    /// rename meanwhile is still read whole from the open descriptor, while one that shrinks in place
    /// is an error.
    @discardableResult
    public func addFile(atPath source: String, as path: String) throws -> Int64? {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        if input < 0 {
            if errno == ENOENT { return nil }
            throw TarError.system("open \(source)")
        }
        defer { close(input) }
        var status = stat()
        guard fstat(input, &status) == 0 else { throw TarError.system("stat \(source)") }
        guard (status.st_mode & S_IFMT) == S_IFREG else { return nil }
        let size = Int64(status.st_size)
        try writeHeader(TarEntry(path: path, mode: UInt32(status.st_mode) & 0o7777, size: size, modified: status.st_mtim))
        var remaining = size
        while remaining > 0 {
            let count = try buffer.withUnsafeMutableBytes { chunk -> Int in
                let n = read(input, chunk.baseAddress!, Int(min(Int64(chunk.count), remaining)))
                if n < 0 { throw TarError.system("read \(source)") }
                try write(UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
                return n
            }
            if count == 0 { throw TarError("\(source) shrank while it was archived") }
            remaining -= Int64(count)
        }
        try pad(size)
        return size
    }

    /// Ends the archive with its two zero blocks. The descriptor is left open.
    public func finish() throws {
        try write([UInt8](repeating: 0, count: 2 * tarBlockSize))
    }

    // MARK: Headers

    /// ustar's limit on a size in its 11 octal digits.
    static let ustarSizeLimit: Int64 = 1 << 33

    func writeHeader(_ entry: TarEntry) throws {
        if let problem = TarEntry.problem(withPath: entry.path) { throw TarError("cannot archive '\(entry.path)': \(problem)") }
        let name = entry.path
        var records: [(String, String)] = []
        if name.utf8.count > 100 { records.append(("path", name)) }
        if entry.size >= Self.ustarSizeLimit { records.append(("size", String(entry.size))) }
        if entry.modified.tv_nsec != 0 { records.append(("mtime", Self.decimalTime(entry.modified))) }
        if !records.isEmpty {
            let body = Array(records.map(Self.paxRecord).joined().utf8)
            try write(Self.header(name: "././@PaxHeader", mode: 0o644, size: Int64(body.count), modified: entry.modified.tv_sec, type: "x"))
            try write(body)
            try pad(Int64(body.count))
        }
        // A size beyond ustar's digits is in the pax record; the ustar field then says 0.
        try write(Self.header(
            name: name, mode: entry.mode, size: entry.size >= Self.ustarSizeLimit ? 0 : entry.size,
            modified: entry.modified.tv_sec, type: "0"
        ))
    }

    /// One pax record, `"<length> <key>=<value>\n"`, whose length counts itself.
    static func paxRecord(_ record: (key: String, value: String)) -> String {
        let rest = " \(record.key)=\(record.value)\n".utf8.count
        var length = rest + 1
        while String(length).utf8.count + rest > length { length += 1 }
        return "\(length) \(record.key)=\(record.value)\n"
    }

    /// `seconds.nanoseconds`, as pax's `mtime` has it.
    static func decimalTime(_ time: timespec) -> String {
        let fraction = String(time.tv_nsec)
        return "\(time.tv_sec)." + String(repeating: "0", count: 9 - fraction.count) + fraction
    }

    /// A ustar header block; a name longer than 100 bytes is cut (its pax `path` record holds it whole).
    static func header(name: String, mode: UInt32, size: Int64, modified: Int, type: Character) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: tarBlockSize)
        func put(_ bytes: some Collection<UInt8>, at offset: Int, width: Int) {
            for (index, byte) in bytes.prefix(width).enumerated() { block[offset + index] = byte }
        }
        func octal(_ value: Int64, at offset: Int, width: Int) {
            let digits = String(value, radix: 8)
            put((String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits).utf8, at: offset, width: width - 1)
        }
        put(name.utf8, at: 0, width: 100)
        octal(Int64(mode), at: 100, width: 8)
        octal(Int64(getuid()), at: 108, width: 8)
        octal(Int64(getgid()), at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(Int64(max(0, modified)), at: 136, width: 12)
        put(Array(repeating: UInt8(ascii: " "), count: 8), at: 148, width: 8)
        block[156] = UInt8(ascii: type.unicodeScalars.first!)
        put("ustar\u{0}00".utf8, at: 257, width: 8)
        let checksum = block.reduce(0) { $0 + Int64($1) }
        put((String(repeating: "0", count: max(0, 6 - String(checksum, radix: 8).count)) + String(checksum, radix: 8)).utf8, at: 148, width: 6)
        block[154] = 0
        block[155] = UInt8(ascii: " ")
        return block
    }

    // MARK: Output

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Foundation.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw TarError.system("write")
            }
            offset += n
        }
        bytesWritten += Int64(bytes.count)
    }

    /// Zeros up to the next block boundary after `size` bytes of contents.
    func pad(_ size: Int64) throws {
        let remainder = Int(size % Int64(tarBlockSize))
        guard remainder != 0 else { return }
        try write([UInt8](repeating: 0, count: tarBlockSize - remainder))
    }
}

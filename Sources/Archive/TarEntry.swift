import Foundation

/// One member of a tar archive as ``TarWriter`` writes it and ``TarReader`` reads it: a regular file.
/// Folders are implied by their files' paths; links, devices and other kinds are never written, and
/// refused when read.
public struct TarEntry: Sendable, Equatable {
    /// The slash-separated relative path, as stored.
    public var path: String
    /// The permission bits (`0o644`, ...).
    public var mode: UInt32
    /// The contents' size in bytes.
    public var size: Int64
    /// The modification time, to the nanosecond (kept in a pax `mtime` record when it has a fraction).
    public var modified: timespec

    public init(path: String, mode: UInt32 = 0o644, size: Int64, modified: timespec) {
        self.path = path
        self.mode = mode
        self.size = size
        self.modified = modified
    }

    public static func == (left: TarEntry, right: TarEntry) -> Bool {
        left.path == right.path && left.mode == right.mode && left.size == right.size
            && left.modified.tv_sec == right.modified.tv_sec && left.modified.tv_nsec == right.modified.tv_nsec
    }

    /// Why `path` may not be a member's path, or nil when it may: it must be relative, non-empty, with no
    /// empty, `.` or `..` component, no backslash and no control character, so that extracting it under a
    /// folder can only write inside that folder.
    public static func problem(withPath path: String) -> String? {
        if path.isEmpty { return "an empty path" }
        if path.hasPrefix("/") { return "an absolute path" }
        if path.utf8.contains(0) || path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return "a control character" }
        if path.contains("\\") { return "a backslash" }
        for component in path.split(separator: "/", omittingEmptySubsequences: false) {
            if component.isEmpty || component == "." { return "an empty or '.' component" }
            if component == ".." { return "a '..' component" }
        }
        return nil
    }
}

/// Why an archive could not be written or read.
public struct TarError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }

    static func system(_ operation: String, _ code: Int32 = errno) -> TarError {
        TarError("\(operation): \(String(cString: strerror(code)))")
    }
}

/// The ustar block size: headers and contents are padded to it.
let tarBlockSize = 512

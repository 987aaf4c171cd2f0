import Foundation
import SDBoxCore
import Synchronization

/// The sha256 of model files already hashed, keyed by what identifies a file's contents without reading
/// it: its device, inode, size and modification time (``FileIdentity``). A checkpoint renamed, linked
/// again, registered again after a deletion, or found again by a rebuilt catalogue is not read again
/// (several GB, a minute of disk on a real box); a file that changed is. The entries live in a JSON file
/// beside the models (``defaultFileName`` in the models root), replaced atomically on each change.
///
/// Its methods block on the disk: call them from a thread pool.
public final class ChecksumCache: Sendable {
    /// What identifies a file's contents without reading it.
    public struct FileIdentity: Hashable, Sendable {
        public var device: UInt64
        public var inode: UInt64
        public var size: Int64
        /// The modification time, in nanoseconds since 1970.
        public var modified: Int64

        /// The identity of the file at `path` (following symbolic links), or nil when it cannot be read.
        public init?(ofFileAt path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
            size = Int64(info.st_size)
            modified = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        }

        /// The entry's key in the cache file.
        var key: String { "\(device):\(inode):\(size):\(modified)" }
    }

    /// A file's sha256, and when it was remembered.
    struct Entry: Codable, Sendable {
        var sha256: String
        var remembered: Date
    }

    /// The cache file's name in the models root.
    public static let defaultFileName = ".sdbox-sha256.json"
    /// The most entries kept; past it, the oldest are dropped.
    static let limit = 4096

    let path: String
    let entries: Mutex<[String: Entry]>

    /// Reads the cache file at `path`; a missing or damaged file is an empty cache.
    public init(file path: String) {
        self.path = path
        let saved = (try? Data(contentsOf: URL(fileURLWithPath: path))).flatMap { try? JSONDecoder().decode([String: Entry].self, from: $0) }
        entries = Mutex(saved ?? [:])
    }

    /// How many files it knows.
    public var count: Int { entries.withLock(\.count) }

    /// The file's sha256: from the cache when its identity is known, else read whole and remembered
    /// (unless the file changed while it was read).
    public func sha256(ofFileAt path: String) throws -> String {
        guard let before = FileIdentity(ofFileAt: path) else { return try Checkpoint.sha256(ofFileAt: path) }
        if let known = entries.withLock({ $0[before.key]?.sha256 }) { return known }
        let sha256 = try Checkpoint.sha256(ofFileAt: path)
        if FileIdentity(ofFileAt: path) == before { remember(sha256, for: before) }
        return sha256
    }

    /// Remembers the sha256 of a file hashed elsewhere (an upload hashed as it streamed in).
    public func remember(_ sha256: String, forFileAt path: String) {
        guard let identity = FileIdentity(ofFileAt: path) else { return }
        remember(sha256, for: identity)
    }

    func remember(_ sha256: String, for identity: FileIdentity) {
        let snapshot = entries.withLock { entries -> [String: Entry] in
            entries[identity.key] = Entry(sha256: sha256, remembered: Date())
            if entries.count > Self.limit {
                let oldest = entries.sorted { $0.value.remembered < $1.value.remembered }.prefix(entries.count - Self.limit)
                for (key, _) in oldest { entries[key] = nil }
            }
            return entries
        }
        // Best effort: a cache that cannot be written only costs a hash later.
        if let data = try? JSONEncoder().encode(snapshot) { try? data.write(to: URL(fileURLWithPath: path), options: .atomic) }
    }
}

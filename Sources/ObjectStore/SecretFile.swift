import Foundation
import Glibc

/// A secret kept in a file, made once: the first process to need it writes it, and every other one, on
/// this box or on another sharing the folder, reads that same one. The file is written under a temporary
/// name, synced, and linked to its name only if nothing is there yet (`link(2)` never replaces), so two
/// boxes starting together cannot each keep a different secret.
public enum SecretFile {
    /// The secret in `path` when `isValid` accepts it, else a new one from `make`, written (readable by
    /// the owner only) unless another process wrote one first, which is then the one returned.
    public static func loadOrCreate(at path: String, isValid: (Data) -> Bool, make: () -> Data) throws -> Data {
        if let existing = FileManager.default.contents(atPath: path), isValid(existing) { return existing }
        let secret = make()
        let temporary = path + ".tmp-" + UUID().uuidString
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SecretFileError(path: path, reason: String(cString: strerror(errno))) }
        defer { unlink(temporary) }
        let written = secret.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == secret.count, synced else { throw SecretFileError(path: path, reason: "write: \(String(cString: strerror(errno)))") }
        if link(temporary, path) == 0 { return secret }
        guard errno == EEXIST else { throw SecretFileError(path: path, reason: "link: \(String(cString: strerror(errno)))") }
        // Someone else's is there: theirs is the secret (a damaged one is replaced, as before).
        if let existing = FileManager.default.contents(atPath: path), isValid(existing) { return existing }
        guard rename(temporary, path) == 0 else { throw SecretFileError(path: path, reason: "rename: \(String(cString: strerror(errno)))") }
        return secret
    }
}

/// A secret file that could not be read or written.
public struct SecretFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "cannot write the secret \(path): \(reason)" }
}

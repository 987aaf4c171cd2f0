import Crypto
import Foundation

/// What a key may do: `admin` manages models, pools and keys and sees every task; `user` generates and
/// sees only its own tasks and images.
public enum Role: String, Codable, Sendable, CaseIterable {
    case admin
    case user
}

/// An API key as stored: its public id, the user it acts for, its role, and the sha256 of its secret
/// (the secret itself is shown once, when the key is made, and never stored).
public struct APIKeyRecord: Codable, Sendable, Equatable {
    public var id: String
    public var user: String
    public var role: Role
    public var secretHash: String
    public var createdAt: Date
    public var revokedAt: Date?

    /// Makes a new key for `user`; returns the record to store and the full key to show once.
    public static func make(user: String, role: Role, now: Date = Date()) -> (record: APIKeyRecord, key: String) {
        let id = TaskID.make()
        let secret = TaskID.make() + TaskID.make() + TaskID.make()
        let record = APIKeyRecord(id: id, user: user, role: role, secretHash: Self.hash(secret), createdAt: now, revokedAt: nil)
        return (record, "sdbox_\(id)_\(secret)")
    }

    /// The id and secret of a presented key, if it has the shape of one.
    public static func parse(_ key: String) -> (id: String, secret: String)? {
        let parts = key.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "sdbox", TaskID.isWellFormed(String(parts[1])), parts[2].count == 36 else { return nil }
        return (String(parts[1]), String(parts[2]))
    }

    /// Whether `secret` is this key's, compared in constant time.
    public func accepts(secret: String) -> Bool {
        let presented = Array(Self.hash(secret).utf8)
        let stored = Array(secretHash.utf8)
        guard presented.count == stored.count else { return false }
        return zip(presented, stored).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static func hash(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).hexString
    }

    /// Why `name` cannot be a user name (it becomes a folder of image keys), or nil.
    public static func problem(withUserName name: String) -> String? {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard (1...64).contains(name.count), name.allSatisfy(allowed.contains), !name.hasPrefix(".") else {
            return "a user name is 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
        }
        return nil
    }
}

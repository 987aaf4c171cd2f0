import Crypto
import Foundation
import SDBoxCore

/// Signs object keys with an expiry so that a URL grants access to one object until a given time.
///
/// The signature is `HMAC-SHA256(secret, "<key>\n<expires>")` in hex; a URL whose key, expiry or signature
/// was changed, or whose expiry has passed, is refused.
public struct URLSigner: Sendable {
    let key: SymmetricKey

    public init(secret: some ContiguousBytes) {
        self.key = SymmetricKey(data: secret)
    }

    /// Loads the secret kept in `path`, creating a random one (readable by the owner only) if there is none.
    public static func loadOrCreateSecret(at path: String) throws -> Data {
        try SecretFile.loadOrCreate(at: path, isValid: { $0.count >= 32 }) {
            var generator = SystemRandomNumberGenerator()
            return Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
    }

    /// The signature for `objectKey` valid until `expires` (Unix seconds).
    public func signature(for objectKey: String, expires: Int64) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(objectKey)\n\(expires)".utf8), using: key)
        return Data(mac).hexString
    }

    /// The path and query that give access to `objectKey` until `expires`.
    public func signedPath(for objectKey: String, expires: Int64) -> String {
        let escaped = objectKey.addingPercentEncoding(withAllowedCharacters: Self.pathCharacters) ?? objectKey
        return "/objects/\(escaped)?expires=\(expires)&sig=\(signature(for: objectKey, expires: expires))"
    }

    /// Whether `signature` is valid for `objectKey` and `expires`, and `expires` is not past `now`.
    public func verify(objectKey: String, expires: Int64, signature: String, now: Date = Date()) -> Bool {
        guard expires >= Int64(now.timeIntervalSince1970), let mac = Self.bytes(fromHex: signature) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Data("\(objectKey)\n\(expires)".utf8), using: key)
    }

    static let pathCharacters: CharacterSet = {
        var set = CharacterSet.urlPathAllowed
        set.remove(charactersIn: "?#%;")
        return set
    }()

    static func bytes(fromHex hex: String) -> Data? {
        guard hex.count == 64 else { return nil }
        var data = Data(capacity: 32)
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
            data.append(byte)
            index = next
        }
        return data
    }
}

import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import ObjectStore
import Scheduler
import SDBoxCore

extension Services {
    /// Signed, expiring URLs for object keys, absolute when the base is known.
    func signedURLs(for keys: [String], request: Request) -> [String] {
        signedURLs(for: keys, base: urlBase(for: request))
    }

    /// The base of the signed URLs answered to `request`: `publicURL`, else the request's own host.
    func urlBase(for request: Request) -> String {
        configuration.http.publicURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? request.head.authority.map { "http://\($0)" } ?? ""
    }

    /// Signed, expiring URLs for object keys under `base`.
    func signedURLs(for keys: [String], base: String) -> [String] {
        let expires = urlExpiry()
        return keys.map { base + signer.signedPath(for: $0, expires: expires) }
    }

    /// When URLs signed now expire (Unix seconds).
    func urlExpiry() -> Int64 {
        Int64(Date().timeIntervalSince1970) + Int64(configuration.http.urlExpirySeconds)
    }
}

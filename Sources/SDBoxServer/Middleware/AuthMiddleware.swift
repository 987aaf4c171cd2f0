import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import SDBoxCore
import Storage
import Synchronization

/// Authenticates requests with API keys (`Authorization: Bearer <key>` or `X-API-Key: <key>`), sets the
/// caller's user and role in the context, keeps users off admin routes, and applies the per-key rate limit.
///
/// Who may call what is decided on the route the router matched (``RouteAccess``), never on a second
/// reading of the raw path: `//admin/keys` reaches the `/admin/keys` route and is judged as it. With keys
/// not required, a request without a key acts as the `default` admin; a key that is given is still checked.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = SDBoxRequestContext
    let keys: any KeyStore
    let accounts: UserAccounts
    let required: Bool
    let limiter: RateLimiter?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let access = RouteAccess(route: context.endpointPath, method: request.method, path: request.uri.path)
        // Signed object URLs and the web pages are fetched without a key, as the least-privileged caller.
        if access == .public { return try await next(request, context) }
        var context = context
        if let token = request.headers[.token].map({ Self.trimmingSpaces($0.utf8[...]) }), !token.isEmpty {
            // The original's session header: an unknown or expired token is its 410, "log in again".
            guard let session = try await accounts.session(token: token) else {
                throw APIError(.gone, "login expired", detail: "please login first or login expired (POST /login)")
            }
            context.act(as: session)
        } else if let presented = Self.presentedKey(request) {
            if let key = try await keys.authenticate(presented) {
                context.user = key.user
                context.role = key.role
                context.keyID = key.id
                context.rateLimitID = key.id
            } else if APIKeyRecord.parse(presented) == nil, let session = try await accounts.session(token: presented) {
                context.act(as: session)
            } else {
                throw APIError(.unauthorized, "invalid API key", detail: "the API key or session token is unknown, revoked or expired")
            }
        } else if required {
            throw APIError(
                .unauthorized, "API key required",
                detail: "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' (keys are made with `sdbox keys add`), or a session token from POST /login in 'Token'"
            )
        } else {
            context.user = SDBoxRequestContext.keylessUser
            context.role = .admin
        }
        if access == .admin && !context.isAdmin {
            throw APIError(.forbidden, "admin only", detail: "\(context.endpointPath ?? request.uri.path) needs an admin key")
        }
        if let limiter, let id = context.rateLimitID, let wait = limiter.take(id) {
            throw APIError(.tooManyRequests, "rate limit", detail: "too many requests for this key; retry in \(Int(wait.rounded(.up))) s", extra: ["retryAfter": .integer(Int64(wait.rounded(.up)))])
        }
        return try await next(request, context)
    }

    static func presentedKey(_ request: Request) -> String? {
        if let authorization = request.headers[.authorization] {
            // The scheme is case-insensitive: compared byte by byte, ASCII letters folded.
            let scheme = authorization.utf8.prefix(7)
            if scheme.count == 7, zip(scheme, "bearer ".utf8).allSatisfy({ $0 | 0x20 == $1 | 0x20 }) {
                return trimmingSpaces(authorization.utf8.dropFirst(7))
            }
        }
        if let key = request.headers[.apiKey] { return trimmingSpaces(key.utf8[...]) }
        return nil
    }

    /// The text without the spaces and tabs around it (HTTP's optional whitespace).
    static func trimmingSpaces(_ text: Substring.UTF8View) -> String {
        let isSpace = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        guard let first = text.firstIndex(where: { !isSpace($0) }), let last = text.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(Substring(text[first...last]))
    }
}

/// A token bucket per API key: `perMinute` requests a minute, in bursts of up to `perMinute`.
final class RateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }
    let perMinute: Double
    let buckets = Mutex<[String: Bucket]>([:])

    init(perMinute: Int) {
        self.perMinute = Double(perMinute)
    }

    /// Takes a token for `key`; returns nil when allowed, else the seconds until a token is free.
    func take(_ key: String, now: ContinuousClock.Instant = .now) -> Double? {
        buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: perMinute, updated: now)
            let elapsed = bucket.updated.duration(to: now).seconds
            bucket.tokens = min(perMinute, bucket.tokens + elapsed * perMinute / 60)
            bucket.updated = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return (1 - bucket.tokens) * 60 / perMinute
        }
    }
}

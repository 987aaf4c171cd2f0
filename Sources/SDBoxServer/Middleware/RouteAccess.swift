import Appliance
import HTTPTypes

/// Who may call a route, decided from the route the router matched: its registered pattern (Hummingbird's
/// `endpointPath`, e.g. `/admin/keys/{id}`), which is the same whatever spelling of the path reached it
/// (`//admin/keys`, `/admin/keys/`, `/x/../admin/keys` after the router's own reading). Requests that
/// match no route (static files under `/web`, or a 404) are judged as such.
enum RouteAccess: Hashable {
    /// Anyone, without a key: health, the OpenAPI document, signed object URLs and the web pages.
    case `public`
    /// Any valid key (or none, when keys are not required).
    case user
    /// An admin key: keys, models, pools, workers, metrics, and starting, stopping or refreshing shared workers.
    case admin

    /// Routes anyone may read without a key (GET and HEAD only).
    static let publicRoutes: Set<String> = ["/", "/healthz", "/readyz", "/openapi.json", "/objects/**"]
    /// Routes anyone may post to without a key: signing in.
    static let publicPosts: Set<String> = ["/login"]
    /// Routes, and route prefixes ending in `/`, only admins may call.
    static let adminRoutes: Set<String> = [
        "/batch_update_sd_resource", "/del/sd/functions", "/workers", "/list/sdapi/functions", "/metrics", "/restart",
        "/sdapi/v1/reload-checkpoint", "/sdapi/v1/unload-checkpoint", "/sdapi/v1/refresh-checkpoints", "/sdapi/v1/refresh-vae",
        "/sdapi/v1/refresh-loras", "/sdapi/v1/refresh-embeddings",
    ]
    static let adminPrefixes = ["/admin/"]
    /// Routes anyone with a key may read, but only admins may change (the original's model registry).
    static let adminWrites: Set<String> = ["/models", "/models/{name}"]

    /// Whether a raw request path is one of the web pages' files (`/web/...`): the passthrough catch-all
    /// lets these through without a key to the file middleware, and never forwards them. One function for
    /// both, so that what is public is exactly what is never forwarded.
    static func isWebAsset(path: String) -> Bool {
        path.split(separator: "/", omittingEmptySubsequences: true).first == "web"
    }

    /// - Parameter route: The matched route's pattern; nil when no route matched.
    /// - Parameter path: The raw request path (for the passthrough catch-all, which also meets the web pages' files).
    init(route: String?, method: HTTPRequest.Method, path: String = "") {
        let reads = method == .get || method == .head
        if route == "/**", reads, Self.isWebAsset(path: path) {
            self = .public
            return
        }
        guard let route else {
            // Only the web pages' static files (or a 404) answer an unmatched GET.
            self = reads ? .public : .user
            return
        }
        if Self.adminRoutes.contains(route) || Self.adminPrefixes.contains(where: route.hasPrefix) || (!reads && Self.adminWrites.contains(route)) {
            self = .admin
        } else if (reads && Self.publicRoutes.contains(route)) || (method == .post && Self.publicPosts.contains(route)) {
            self = .public
        } else {
            self = .user
        }
    }
}

import Appliance
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import SDBoxCore

/// The per-request context of sdbox's routes: Hummingbird's core storage plus who the request acts for,
/// as its API key says (``keylessUser``, an admin, when keys are not required and none is given). Until
/// ``AuthMiddleware`` has judged the request it acts for nobody, with a user's rights. It also
/// carries a WebSocket upgrade (`/ws`), so that the WebSocket routes go through the same middleware.
public struct SDBoxRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The user whose tasks and images this request may see; the `<user>` of image keys.
    public var user: String = "anonymous"
    /// What the caller may do.
    public var role: Role = .user
    /// The id of the API key used, if any (never set for a session).
    public var keyID: String?
    /// Whose share of the rate limit the request takes: its API key's, or its signed-in user's.
    var rateLimitID: String?
    public let webSocket = WebSocketHandlerReference<SDBoxRequestContext>()
    /// The request's connection.
    let channel: any Channel
    /// The client's IP address, when the connection has one: formatted when asked (a sign-in), not for
    /// every request.
    public var remoteAddress: String? { channel.remoteAddress?.ipAddress }

    /// Who a request without a key acts for when keys are not required.
    public static let keylessUser = "default"
    /// Whether the caller may see every user's tasks and manage models, pools and keys.
    public var isAdmin: Bool { role == .admin }

    /// Who the request acts for, as the appliance sees it.
    public var caller: Caller { Caller(user: user, isAdmin: isAdmin, apiKey: keyID) }

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }

    /// Acts for a signed-in session's user, with its role; its rate limit is the user's.
    mutating func act(as session: SessionRecord) {
        user = session.user
        role = session.role
        rateLimitID = "session:" + session.user
    }

    /// Bodies are read by the routes with the configured limit (see ``ServerConfiguration/maxBodyBytes``).
    public var maxUploadSize: Int { 1 << 40 }
}

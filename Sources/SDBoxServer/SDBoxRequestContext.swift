import Hummingbird
import Logging

/// The per-request context of sdbox's routes: Hummingbird's core storage plus the user the request
/// acts for (`default` until API keys are configured).
public struct SDBoxRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The user whose tasks and images this request may see; the `<user>` of image keys.
    public var user: String = "default"

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }

    /// Bodies are read by the routes with the configured limit (see ``ServerConfiguration/maxBodyBytes``).
    public var maxUploadSize: Int { 1 << 40 }
}

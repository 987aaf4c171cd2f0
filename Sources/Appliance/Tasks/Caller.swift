/// Who a request acts for, as its API key says: the user whose tasks and images it may see, whether it
/// may see everyone's and manage the box, and the id of the API key it presented (none for a session or
/// a keyless request), which its tasks record for usage and quotas.
public struct Caller: Sendable, Equatable {
    public var user: String
    public var isAdmin: Bool
    public var apiKey: String?

    public init(user: String, isAdmin: Bool, apiKey: String? = nil) {
        self.user = user
        self.isAdmin = isAdmin
        self.apiKey = apiKey
    }
}

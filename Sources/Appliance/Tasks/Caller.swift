/// Who a request acts for, as its API key says: the user whose tasks and images it may see, and whether
/// it may see everyone's and manage the box.
public struct Caller: Sendable, Equatable {
    public var user: String
    public var isAdmin: Bool

    public init(user: String, isAdmin: Bool) {
        self.user = user
        self.isAdmin = isAdmin
    }
}

/// Every quota an admin has set, per user and per API key id; kept in the catalog's settings. `revision`
/// counts the changes, so that of two answers of concurrent changes the later one is kept in memory.
public struct QuotaTable: Codable, Sendable, Equatable {
    public var users: [String: Quota] = [:]
    public var keys: [String: Quota] = [:]
    public var revision = 0

    public init() {}

    /// The quota set on `subject`, if any.
    public subscript(subject: QuotaSubject) -> Quota? {
        get {
            switch subject {
            case .user(let name): users[name]
            case .key(let id): keys[id]
            }
        }
        set {
            switch subject {
            case .user(let name): users[name] = newValue
            case .key(let id): keys[id] = newValue
            }
        }
    }

    /// Every subject with a quota, users first, then keys, each by name.
    public var subjects: [QuotaSubject] {
        users.keys.sorted().map(QuotaSubject.user) + keys.keys.sorted().map(QuotaSubject.key)
    }
}

/// Whom a quota limits: a user (all of its tasks, whatever key or session submitted them) or one API key
/// (the tasks submitted with it), by the key's id.
public enum QuotaSubject: Hashable, Sendable {
    case user(String)
    case key(String)

    /// `user` or `key`, as the admin API's paths and answers name it.
    public var type: String {
        switch self {
        case .user: "user"
        case .key: "key"
        }
    }

    /// The user's name or the key's id.
    public var name: String {
        switch self {
        case .user(let name), .key(let name): name
        }
    }

    /// The subjects a task counts against: its user, and the API key that submitted it if any.
    public static func of(_ task: TaskRecord) -> [QuotaSubject] {
        guard let key = task.apiKey else { return [.user(task.user)] }
        return [.user(task.user), .key(key)]
    }
}

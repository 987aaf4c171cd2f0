import PostgresNIO

/// What users' unfinished (queued or running) tasks take across a fleet, for the per-user queue limits:
/// each box counts the tasks it accepted itself, as it admits them (the scheduler's `UsageLedger`), and
/// reads here what the other boxes accepted, by the `accepted_by` and `request_bytes` of each task.
public struct PostgresUnfinishedUsage: Sendable {
    let database: PostgresDatabase
    /// This box's name.
    public let node: String

    public init(database: PostgresDatabase, node: String) {
        self.database = database
        self.node = node
    }

    /// The unfinished tasks of `user` that other boxes accepted, `upTo` that many (a user at the limit is
    /// refused whatever the rest): how many, and the bytes their requests take.
    public func elsewhere(of user: String, upTo maxTasks: Int) async throws -> (tasks: Int, bytes: Int) {
        let rows = try await database.query("""
            SELECT count(*), coalesce(sum(request_bytes), 0)::bigint FROM (
                SELECT request_bytes FROM sdbox_tasks
                WHERE user_name = \(user) AND NOT final AND accepted_by IS DISTINCT FROM \(node) LIMIT \(maxTasks)
            ) unfinished
            """)
        for try await (tasks, bytes) in rows.decode((Int, Int).self) { return (tasks, bytes) }
        return (0, 0)
    }

    /// Those of `ids` that are final: tasks this box counts that ended on another box, whose notices it may
    /// have missed.
    public func ended(among ids: [String]) async throws -> [String] {
        guard !ids.isEmpty else { return [] }
        let rows = try await database.query("SELECT id FROM sdbox_tasks WHERE id = ANY(\(ids)::text[]) AND final")
        var ended: [String] = []
        for try await id in rows.decode(String.self) { ended.append(id) }
        return ended
    }

    /// The unfinished tasks this box accepted (before it restarted): each one's id, user and request bytes.
    public func acceptedHere() async throws -> [(id: String, user: String, bytes: Int)] {
        let rows = try await database.query(
            "SELECT id, user_name, request_bytes FROM sdbox_tasks WHERE NOT final AND accepted_by = \(node)"
        )
        var tasks: [(id: String, user: String, bytes: Int)] = []
        for try await (id, user, bytes) in rows.decode((String, String, Int).self) { tasks.append((id, user, bytes)) }
        return tasks
    }
}

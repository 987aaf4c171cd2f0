import Foundation
import PostgresNIO
import SDBoxCore

/// The ``TaskStore`` in PostgreSQL (table `sdbox_tasks`): each task's record as `jsonb`, beside the
/// columns its queries need; a change is a transaction that locks the task's row (`SELECT … FOR UPDATE`)
/// and checks the move as LMDB does (``TaskRecord/changed(by:)``). Listings use the same positions as
/// LMDB's time index, so a page's `next` means the same in both. Nothing is cached: other boxes may
/// change a task at any time.
///
/// For the fleet, every write tells the other boxes (``FleetNotice``, sent as the write commits): a new
/// task is `queued` for the boxes with room to claim, a changed one is a `task` notice for those waiting
/// on it. A change of a task this box claimed (``HeldClaims``) is written only while the claim is still
/// this box's, with the same fencing number; else it is refused (``TaskStoreError/claimLost(_:)``).
public struct PostgresTaskStore: TaskStore {
    let database: PostgresDatabase
    /// This box's name, as its claims carry it.
    let node: String
    /// The claims this box holds.
    let claims: HeldClaims
    /// Final records read or written lately, for polls of finished tasks.
    let finished = FinalTaskCache()

    public init(database: PostgresDatabase, node: String, claims: HeldClaims) {
        self.database = database
        self.node = node
        self.claims = claims
    }

    /// Writes a new task. The id must be new; a clash (astronomically unlikely) gets a fresh id.
    public func insert(_ task: TaskRecord) async throws -> TaskRecord {
        var task = task
        while true {
            if let stored = try await Self.insert(task, node: node, on: database) { return stored }
            task.id = TaskID.make()
        }
    }

    public func insertUnlessPresent(_ task: TaskRecord) async throws -> (task: TaskRecord, inserted: Bool) {
        while true {
            if let stored = try await Self.insert(task, node: node, on: database) { return (stored, true) }
            // Read in a statement of its own, whose snapshot sees the row that was in the way.
            if let existing = try await get(task.id) { return (existing, false) }
        }
    }

    /// Writes `task` unless its id is taken; the task as stored, or nil when the id was taken.
    private static func insert(_ task: TaskRecord, node: String, on database: PostgresDatabase) async throws -> TaskRecord? {
        let text = try RecordCoding.text(task)
        let notice = FleetNotice(.queued, id: task.id, model: task.model).payload()
        let deliverer: String? = task.state.isFinal ? node : nil
        let rows = try await database.query("""
            WITH inserted AS (
                INSERT INTO sdbox_tasks (
                    id, position, state, final, user_name, model, created_at, callback_pending, callback_by, accepted_by, request_bytes, record
                )
                VALUES (\(task.id), \(TaskFilter.position(of: task)), \(task.state.rawValue), \(task.state.isFinal), \(task.user),
                    \(task.model), \(task.createdAt), \(task.callback?.state == .pending), \(deliverer), \(node), \(task.request.storageSize),
                    \(text)::jsonb)
                ON CONFLICT (id) DO NOTHING RETURNING id
            )
            SELECT id, pg_notify(\(FleetNotice.channel), \(notice))::text FROM inserted
            """)
        for try await _ in rows.decode((String, String).self) {
            return try RecordCoding.decode(TaskRecord.self, from: text)
        }
        return nil
    }

    /// The task `id`; a final one read or written here within a few seconds comes from memory (``FinalTaskCache``).
    public func get(_ id: String) async throws -> TaskRecord? {
        if let task = finished.task(id) { return task }
        let task = try await database.query("SELECT record::text FROM sdbox_tasks WHERE id = \(id)").record(TaskRecord.self)
        if let task { finished.keep(task) }
        return task
    }

    /// Changes a task in one transaction, its row locked meanwhile; the change is checked as
    /// ``TaskRecord/changed(by:)`` checks it.
    @discardableResult
    public func update(_ id: String, _ change: @escaping @Sendable (inout TaskRecord) throws -> Void) async throws -> TaskRecord {
        try await rewrite(id) { try $0.changed(by: change) }
    }

    @discardableResult
    public func updateCallback(_ id: String, _ change: @escaping @Sendable (inout TaskCallback) throws -> Void) async throws -> TaskRecord {
        try await rewrite(id, delivering: true) { try $0.changingCallback(by: change) }
    }

    /// Locks task `id`, writes what `change` makes of it (nothing when it gives nil), tells the fleet, and
    /// returns the task. A task this box claimed is changed only under the same claim; its webhook, only
    /// by the box that delivers it (`delivering`).
    private func rewrite(
        _ id: String, delivering: Bool = false, _ change: @escaping @Sendable (TaskRecord) throws -> TaskRecord?
    ) async throws -> TaskRecord {
        let (node, claims, held) = (node, claims, claims.epoch(of: id))
        let stored = try await database.transaction { connection in
            let logger = database.logger
            let rows = try await connection.query(
                "SELECT record::text, claimed_by, claim_epoch, callback_by FROM sdbox_tasks WHERE id = \(id) FOR UPDATE", logger: logger
            )
            var found: (text: String, owner: String?, epoch: Int64, deliverer: String?)?
            for try await row in rows.decode((String, String?, Int64, String?).self) { found = row }
            guard let found else { throw TaskStoreError.notFound(id) }
            // A lost claim stays held, so that every later change from this box is refused too.
            if let held, found.owner != node || found.epoch != held {
                throw TaskStoreError.claimLost(id)
            }
            if delivering, let deliverer = found.deliverer, deliverer != node {
                throw TaskStoreError.webhookTakenOver(id)
            }
            let old = try RecordCoding.decode(TaskRecord.self, from: found.text)
            guard let task = try change(old) else { return old }
            let text = try RecordCoding.text(task)
            let notice = FleetNotice(.task, id: id, state: task.state, node: node).payload()
            try await connection.query("""
                WITH changed AS (
                    UPDATE sdbox_tasks SET state = \(task.state.rawValue), final = \(task.state.isFinal), user_name = \(task.user),
                        model = \(task.model), callback_pending = \(task.callback?.state == .pending), record = \(text)::jsonb,
                        callback_by = CASE WHEN \(task.state.isFinal) AND NOT final THEN \(node) ELSE callback_by END,
                        lease_expires_at = CASE WHEN \(task.state.isFinal) THEN NULL ELSE lease_expires_at END
                    WHERE id = \(id) RETURNING id
                )
                SELECT pg_notify(\(FleetNotice.channel), \(notice)) FROM changed WHERE \(task.state != old.state)
                """, logger: logger)
            if task.state.isFinal { claims.drop(id) }
            return try RecordCoding.decode(TaskRecord.self, from: text)
        }
        finished.keep(stored)
        return stored
    }

    /// Throws ``TaskStoreError/claimLost(_:)`` when this box's claim on task `id` was taken over.
    public func confirmClaim(_ id: String) async throws {
        guard let held = claims.epoch(of: id) else { return }
        let rows = try await database.query("SELECT claimed_by, claim_epoch FROM sdbox_tasks WHERE id = \(id)")
        for try await (owner, epoch) in rows.decode((String?, Int64).self) where owner == node && epoch == held { return }
        throw TaskStoreError.claimLost(id)
    }

    /// Whether this box delivers task `id`'s webhook: no other box is named for it (`callback_by`).
    public func deliversWebhook(of id: String) async throws -> Bool {
        let rows = try await database.query("SELECT callback_by FROM sdbox_tasks WHERE id = \(id)")
        for try await deliverer in rows.decode(String?.self) { return deliverer == nil || deliverer == node }
        return false
    }

    /// Final tasks whose webhook is still pending (due for delivery), oldest first.
    ///
    /// In a fleet, those this box delivers: those it ended, and those no box was named for (ended
    /// before the boxes shared the database); taking the latter is one statement, so two boxes starting
    /// together never both deliver one. The webhooks of a box that stopped are taken over by
    /// ``PostgresTaskClaims/takeOverWebhooks(liveSeconds:)``.
    public func pendingCallbacks() async throws -> [TaskRecord] {
        try await database.query("""
            UPDATE sdbox_tasks SET callback_by = \(node)
            WHERE callback_pending AND final AND (callback_by = \(node) OR callback_by IS NULL)
            RETURNING record::text
            """).records(TaskRecord.self).sorted { $0.createdAt < $1.createdAt }
    }

    /// Tasks that are queued or running, oldest first.
    public func activeTasks() async throws -> [TaskRecord] {
        try await database.query("SELECT record::text FROM sdbox_tasks WHERE NOT final ORDER BY position").records(TaskRecord.self)
    }

    /// Up to `limit` tasks, newest first, optionally only one user's and only those `filter` lets through.
    ///
    /// As in LMDB, at most ``TaskFilter/scanLimit`` tasks are examined per call (``TaskPageBuilder``). The
    /// query reads those positions from the index, marks the tasks the filter admits, and sends the
    /// records of the first `limit` of them only.
    public func recent(limit: Int, user: String? = nil, filter: TaskFilter = TaskFilter()) async throws -> TaskPage {
        let states = filter.states.map(\.rawValue).sorted()
        let since = filter.since.map(TaskFilter.position(at:))
        let rows = try await database.query("""
            WITH scanned AS (
                SELECT id, position,
                    (\(user)::text IS NULL OR user_name = \(user))
                    AND (cardinality(\(states)::text[]) = 0 OR state = ANY(\(states)::text[]))
                    AND (\(filter.model)::text IS NULL OR model = \(filter.model)) AS admitted
                FROM sdbox_tasks
                WHERE (\(filter.before)::text IS NULL OR position < \(filter.before)) AND (\(since)::text IS NULL OR position >= \(since))
                ORDER BY position DESC LIMIT \(filter.scanLimit + 1)
            ), counted AS (
                SELECT id, position, admitted,
                    count(*) FILTER (WHERE admitted) OVER (ORDER BY position DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS earlier
                FROM scanned
            )
            SELECT c.position, t.record::text
            FROM counted c LEFT JOIN sdbox_tasks t ON t.id = c.id AND c.admitted AND c.earlier < \(limit)
            WHERE c.earlier <= \(limit)
            ORDER BY c.position DESC
            """)
        var builder = TaskPageBuilder(limit: limit, filter: filter)
        for try await (position, record) in rows.decode((String, String?).self) {
            let more = try builder.examine(position) { try record.map { try RecordCoding.decode(TaskRecord.self, from: $0) } }
            if !more { break }
        }
        return builder.page
    }

    /// Up to `limit` final tasks created before `date`, oldest first (what retention removes).
    public func finishedTasks(createdBefore date: Date, limit: Int) async throws -> [TaskRecord] {
        try await database.query("""
            SELECT record::text FROM sdbox_tasks WHERE final AND position < \(TaskFilter.position(at: date))
            ORDER BY position LIMIT \(limit)
            """).records(TaskRecord.self)
    }

    /// Removes the tasks `ids` that are final and were created before `date`; returns how many went.
    @discardableResult
    public func remove(_ ids: Set<String>, createdBefore date: Date) async throws -> Int {
        let rows = try await database.query("""
            WITH removed AS (
                DELETE FROM sdbox_tasks WHERE id = ANY(\(Array(ids))::text[]) AND final AND position < \(TaskFilter.position(at: date))
                RETURNING 1
            )
            SELECT count(*) FROM removed
            """)
        finished.forget(ids)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }
}

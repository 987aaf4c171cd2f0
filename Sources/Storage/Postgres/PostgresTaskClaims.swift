import Foundation
import PostgresNIO
import SDBoxCore

/// The fleet's one queue: the queued tasks in `sdbox_tasks`, which each box claims when it has room.
///
/// A claim (``claim(_:claimSeconds:)``) takes one queued task no live claim holds, with
/// `FOR UPDATE SKIP LOCKED` (boxes claiming at once take different tasks and never wait for each other),
/// marks it `claimed_by` this box until `lease_expires_at`, and raises its fencing number `claim_epoch`,
/// which this box then holds (``HeldClaims``). The box renews its claims while it runs (``renew(claimSeconds:)``).
/// A box that stops renewing (killed, cut off) loses them once they expire: any box then gives its tasks
/// back to the queue (``release(expiredOrOf:maxAttempts:)``), a running one counting the attempt it had,
/// and the raised fencing number refuses a late write from the box that lost it.
public struct PostgresTaskClaims: Sendable {
    let database: PostgresDatabase
    /// This box's name.
    public let node: String
    /// The claims this box holds, shared with its ``PostgresTaskStore``.
    public let held: HeldClaims

    public init(database: PostgresDatabase, node: String, held: HeldClaims) {
        self.database = database
        self.node = node
        self.held = held
    }

    /// What a box prefers when it claims, from what it runs and what the others report.
    public struct Preferences: Sendable, Equatable {
        /// Models with an idle worker on this box: their tasks run at once.
        public var idle: [String] = []
        /// Models with a worker on this box, busy or not.
        public var warm: [String] = []
        /// Models that have a worker on another live box: a box starts a worker for one no box serves first.
        public var servedElsewhere: [String] = []
        /// Models this box must not take: their pools have all their `maxInstances` across the fleet and
        /// none of them here.
        public var excluded: [String] = []
        /// A task older than this has waited past the fairness bound, and goes before any preference.
        public var fairnessSeconds: Double = 60
        /// Models whose queues are paused.
        public var paused: [String] = []

        public init() {}
    }

    /// Claims the queued task this box should run next, if there is one: one that has waited past the
    /// fairness bound first, then one of a model idle here, warm here, served by no other box, oldest first
    /// within each. Returns the task and holds its claim for `claimSeconds`.
    public func claim(_ preferences: Preferences, claimSeconds: Int) async throws -> TaskRecord? {
        let excluded = preferences.excluded + preferences.paused
        let rows = try await database.query("""
            WITH candidate AS (
                SELECT id FROM sdbox_tasks
                WHERE state = 'queued' AND (claimed_by IS NULL OR lease_expires_at < now()) AND NOT (model = ANY(\(excluded)::text[]))
                ORDER BY created_at < now() - make_interval(secs => \(preferences.fairnessSeconds)) DESC,
                    model = ANY(\(preferences.idle)::text[]) DESC, model = ANY(\(preferences.warm)::text[]) DESC,
                    model = ANY(\(preferences.servedElsewhere)::text[]) ASC, position
                LIMIT 1 FOR UPDATE SKIP LOCKED
            )
            UPDATE sdbox_tasks t SET claimed_by = \(node), claim_epoch = t.claim_epoch + 1,
                lease_expires_at = now() + make_interval(secs => \(claimSeconds))
            FROM candidate WHERE t.id = candidate.id
            RETURNING t.record::text, t.claim_epoch
            """)
        for try await (text, epoch) in rows.decode((String, Int64).self) {
            let task = try RecordCoding.decode(TaskRecord.self, from: text)
            held.hold(task.id, epoch: epoch)
            return task
        }
        return nil
    }

    /// Extends this box's claims on its unfinished tasks by `claimSeconds` from now.
    public func renew(claimSeconds: Int) async throws {
        try await database.query("""
            UPDATE sdbox_tasks SET lease_expires_at = now() + make_interval(secs => \(claimSeconds))
            WHERE claimed_by = \(node) AND NOT final
            """)
    }

    /// Gives back to the queue the unfinished tasks whose claims expired, and with `node` every claim that
    /// box holds (at its start: what it held before it stopped), with a new fencing number and no claim.
    /// A task that was running counts that as an attempt: it is queued again, or fails once it has had
    /// `maxAttempts`. Returns the tasks changed (a failed one is final), each announced to the fleet.
    @discardableResult
    public func release(expiredOrOf node: String?, maxAttempts: Int) async throws -> [TaskRecord] {
        try await database.transaction { connection in
            let logger = database.logger
            let rows = try await connection.query("""
                SELECT record::text, claimed_by FROM sdbox_tasks
                WHERE NOT final AND claimed_by IS NOT NULL AND (claimed_by = \(node) OR lease_expires_at < now())
                ORDER BY position LIMIT 1000 FOR UPDATE SKIP LOCKED
                """, logger: logger)
            var found: [(TaskRecord, String)] = []
            for try await (text, owner) in rows.decode((String, String).self) {
                found.append((try RecordCoding.decode(TaskRecord.self, from: text), owner))
            }
            var released: [TaskRecord] = []
            for (old, owner) in found {
                let task = try old.changed { task in
                    guard task.state == .running else { return }
                    if task.attempts >= maxAttempts {
                        task.state = .failed
                        task.finishedAt = Date()
                        task.error = "the box \(owner) stopped while the task ran on it, \(task.attempts) attempts"
                    } else {
                        task.state = .queued
                    }
                }
                let text = try RecordCoding.text(task)
                let notice = task.state.isFinal ? FleetNotice(.task, id: task.id, state: task.state, node: self.node) : FleetNotice(.queued, id: task.id, model: task.model)
                try await connection.query("""
                    WITH changed AS (
                        UPDATE sdbox_tasks SET state = \(task.state.rawValue), final = \(task.state.isFinal), record = \(text)::jsonb,
                            callback_pending = \(task.callback?.state == .pending), claimed_by = NULL, lease_expires_at = NULL,
                            callback_by = CASE WHEN \(task.state.isFinal) THEN \(self.node) ELSE callback_by END,
                            claim_epoch = claim_epoch + 1
                        WHERE id = \(task.id) RETURNING id
                    )
                    SELECT pg_notify(\(FleetNotice.channel), \(notice.payload())) FROM changed
                    """, logger: logger)
                released.append(task)
            }
            return released
        }
    }

    /// Takes over the pending webhooks of final tasks whose deliverer stopped renewing its row in
    /// `sdbox_nodes` (for `liveSeconds`), and returns those tasks for this box to deliver. Boxes taking over
    /// at once take different ones: a row another box just took names a live box when it is looked at again.
    public func takeOverWebhooks(liveSeconds: Int) async throws -> [TaskRecord] {
        try await database.query("""
            UPDATE sdbox_tasks t SET callback_by = \(node)
            WHERE t.callback_pending AND t.final AND t.callback_by IS DISTINCT FROM \(node)
                AND NOT EXISTS (
                    SELECT 1 FROM sdbox_nodes n
                    WHERE n.name = t.callback_by AND n.heartbeat_at >= now() - make_interval(secs => \(liveSeconds))
                )
            RETURNING t.record::text
            """).records(TaskRecord.self).sorted { $0.createdAt < $1.createdAt }
    }

    /// Gives back to the queue the tasks this box claimed but has not started (`ids`, at graceful
    /// shutdown), so that other boxes take them at once: one `queued` notice tells them all, as a box that
    /// hears it claims while it has room.
    public func giveBack(_ ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        let rows = try await database.query("""
            UPDATE sdbox_tasks SET claimed_by = NULL, lease_expires_at = NULL, claim_epoch = claim_epoch + 1
            WHERE id = ANY(\(ids)::text[]) AND claimed_by = \(node) AND state = 'queued'
            RETURNING id, model
            """)
        var given: [(String, String)] = []
        for try await row in rows.decode((String, String).self) { given.append(row) }
        for (id, _) in given { held.drop(id) }
        if let (id, model) = given.first {
            try await PostgresNotifications(database: database).send(FleetNotice(.queued, id: id, model: model))
        }
    }

    /// The box holding a live claim on task `id`, if any.
    public func holder(of id: String) async throws -> String? {
        let rows = try await database.query(
            "SELECT claimed_by FROM sdbox_tasks WHERE id = \(id) AND NOT final AND lease_expires_at >= now()"
        )
        for try await owner in rows.decode(String?.self) { return owner }
        return nil
    }
}

import Foundation
import SDBoxCore

/// Persistent tasks: every task sdbox accepts is written before it is answered, and every change of state
/// checks that the move is allowed (``TaskState/canMove(to:)``). ``LMDBTaskStore`` is the embedded one.
public protocol TaskStore: Sendable {
    /// Writes a new task. The id must be new; a clash (astronomically unlikely) gets a fresh id.
    func insert(_ task: TaskRecord) async throws -> TaskRecord
    /// Writes a new task under the id its client chose, unless a task with that id exists: then, in the
    /// same transaction, nothing is written and the existing task is returned (`inserted` false).
    func insertUnlessPresent(_ task: TaskRecord) async throws -> (task: TaskRecord, inserted: Bool)
    /// The task `id`, if there is one.
    func get(_ id: String) async throws -> TaskRecord?
    /// Changes a task in one transaction; a change of state must be one the task's state allows, and a final
    /// task cannot be changed.
    @discardableResult
    func update(_ id: String, _ change: @escaping @Sendable (inout TaskRecord) throws -> Void) async throws -> TaskRecord
    /// Changes a task's webhook record, the one thing that still changes once a task is final. In a fleet,
    /// refused with ``TaskStoreError/webhookTakenOver(_:)`` when another box delivers the webhook now.
    @discardableResult
    func updateCallback(_ id: String, _ change: @escaping @Sendable (inout TaskCallback) throws -> Void) async throws -> TaskRecord
    /// Final tasks whose webhook is still pending (due for delivery), oldest first; in a fleet, those this
    /// box delivers.
    func pendingCallbacks() async throws -> [TaskRecord]
    /// Tasks that are queued or running, oldest first.
    func activeTasks() async throws -> [TaskRecord]
    /// Up to `limit` tasks, newest first, optionally only one user's and only those `filter` lets through.
    func recent(limit: Int, user: String?, filter: TaskFilter) async throws -> TaskPage
    /// Up to `limit` final tasks created before `date`, oldest first.
    func finishedTasks(createdBefore date: Date, limit: Int) async throws -> [TaskRecord]
    /// Removes the tasks `ids` that are final and created before `date`; returns how many went.
    func remove(_ ids: Set<String>, createdBefore date: Date) async throws -> Int
    /// Throws ``TaskStoreError/claimLost(_:)`` when this box held a claim on task `id` that another box took over.
    func confirmClaim(_ id: String) async throws
    /// Whether this box is the one to deliver task `id`'s webhook: false in a fleet when another box took it
    /// over while this one had stopped renewing its row (it was frozen, say, or cut off from the database).
    func deliversWebhook(of id: String) async throws -> Bool
}

extension TaskStore {
    /// Throws ``TaskStoreError/claimLost(_:)`` when this box held a claim on task `id` that another box
    /// took over (checked before a result is stored). A store without claims (LMDB) has nothing to check.
    public func confirmClaim(_ id: String) async throws {}

    /// Whether this box delivers task `id`'s webhook: always, for a store no other box shares (LMDB).
    public func deliversWebhook(of id: String) async throws -> Bool { true }

    /// Up to `limit` tasks, newest first.
    public func recent(limit: Int, user: String? = nil) async throws -> TaskPage {
        try await recent(limit: limit, user: user, filter: TaskFilter())
    }
}

/// Why a task could not be changed.
public enum TaskStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case notFound(String)
    case invalidTransition(id: String, from: TaskState, to: TaskState)
    /// This box's claim on the task was taken over by another box (``PostgresTaskClaims``): a late change
    /// from the box that lost it is refused, so that a task finishes once.
    case claimLost(String)
    /// Another box delivers the task's webhook now: it took it over while this box had stopped renewing its
    /// row, so an attempt of this box's is not recorded.
    case webhookTakenOver(String)

    public var description: String {
        switch self {
        case .notFound(let id): "task \(id) not found"
        case .invalidTransition(let id, let from, let to): "task \(id) cannot move from \(from.rawValue) to \(to.rawValue)"
        case .claimLost(let id): "task \(id) was taken over by another box after this box's claim on it expired"
        case .webhookTakenOver(let id): "task \(id)'s webhook is delivered by another box, which took it over after this box stopped renewing its row"
        }
    }
}

/// Which tasks ``TaskStore/recent(limit:user:filter:)`` lists.
public struct TaskFilter: Sendable, Equatable {
    /// Only tasks in one of these states; all when empty.
    public var states: Set<TaskState> = []
    /// Only tasks of this checkpoint.
    public var model: String?
    /// Only tasks before this position in the time index: a page's `next`, or ``TaskFilter/position(at:)``
    /// of a time for tasks created before it.
    public var before: String?
    /// Only tasks created at or after this time.
    public var since: Date?
    /// The most tasks one call examines.
    public var scanLimit = 2_000

    public init(states: Set<TaskState> = [], model: String? = nil, before: String? = nil, since: Date? = nil) {
        self.states = states
        self.model = model
        self.before = before
        self.since = since
    }

    func admits(_ task: TaskRecord) -> Bool {
        (states.isEmpty || states.contains(task.state)) && (model == nil || task.model == model)
    }
}

/// One page of a task listing, newest first.
public struct TaskPage: Sendable, Equatable {
    public var tasks: [TaskRecord]
    /// Where the next (older) page starts, as `before`; nil when the listing reached its end.
    public var next: String?
}

extension TaskFilter {
    /// The listing's position of the first task created at `date` (to the millisecond), for ``before``:
    /// positions are the creation time in milliseconds, 15 digits, then `_` and the task's id.
    public static func position(at date: Date) -> String {
        let digits = String(max(0, Int64((date.timeIntervalSince1970 * 1000).rounded(.down))))
        return String(repeating: "0", count: max(0, 15 - digits.count)) + digits
    }
}

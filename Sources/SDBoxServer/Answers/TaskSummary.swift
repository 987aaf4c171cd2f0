import Foundation
import SDBoxCore

/// A task as `GET /tasks` lists it and `GET /tasks/{id}` shows it (with its `request` there): who asked
/// what of which model, where it stands, and when it started and finished (seconds since 1970).
struct TaskSummary: Encodable {
    let taskId: String
    let kind: TaskKind
    let model: String
    let user: String
    let status: String
    let attempts: Int
    let createdAt: String
    @ExplicitNull var error: String?
    @ExplicitNull var startedAt: Double?
    @ExplicitNull var finishedAt: Double?
    let priority: Int
    /// The stored request, on `GET /tasks/{id}` only.
    var request: JSONValue?

    init(_ task: TaskRecord, withRequest: Bool = false) {
        taskId = task.id
        kind = task.kind
        model = task.model
        user = task.user
        status = task.state.apiName
        attempts = task.attempts
        createdAt = task.createdAt.ISO8601Format()
        error = task.error
        startedAt = task.startedAt?.timeIntervalSince1970
        finishedAt = task.finishedAt?.timeIntervalSince1970
        priority = task.priority
        request = withRequest ? task.request : nil
    }
}

/// A page of `GET /tasks`: the tasks, newest first, and the cursor of the next page when there is one.
struct TaskPage: Encodable {
    let tasks: [TaskSummary]
    let next: String?
}

import Appliance
import Hummingbird
import SDBoxCore

/// The task API's short answer: a task's id and where it stands (`{taskId, status}`), as an async
/// submission, a cancellation and the original's clients get it.
struct TaskAnswer: Encodable {
    let taskId: String
    let status: TaskState

    init(_ task: TaskRecord) {
        taskId = task.id
        status = task.state
    }
}

extension Response {
    /// `{taskId, status}` for `task`.
    static func taskAnswer(_ task: TaskRecord) throws -> Response {
        try .json(encoding: TaskAnswer(task))
    }
}

extension APIError {
    /// A synchronous caller's answer when its task did not succeed: 500 with the reason, the task's id
    /// and `extra` (`task failed`, or `task cancelled` with no result to give).
    static func taskDidNotSucceed(_ task: TaskRecord, extra: [String: JSONValue] = [:]) -> APIError {
        var fields = extra
        fields["taskId"] = .string(task.id)
        return APIError(
            .internalServerError, task.state == .failed ? "task failed" : "task \(task.state.rawValue)", detail: task.error ?? "",
            extra: fields
        )
    }
}

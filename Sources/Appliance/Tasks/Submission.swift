import HTTPTypes
import SDBoxCore
import Storage

/// Who submits a task and how: the caller, the webhook to call when it ends, the id the client chose
/// (the original's `taskId` request header), which makes the submission idempotent: the same id again
/// returns the task it named, never a second one; and whether the caller waits for the outcome (a
/// synchronous request), which lets its task go to a worker while it is being written.
package struct Submission: Sendable {
    package let caller: Caller
    package var callback: TaskCallback?
    package var taskID: String?
    package var waits: Bool

    package init(caller: Caller, callback: TaskCallback? = nil, taskID: String? = nil, waits: Bool = false) {
        self.caller = caller
        self.callback = callback
        self.taskID = taskID
        self.waits = waits
    }
}

extension Services {
    /// The task a submission's client-chosen id already names, or nil when it names none (or there is no
    /// such id). Another user's task with that id is a 409, never handed out.
    package func existingTask(for submission: Submission) async throws -> TaskRecord? {
        guard let id = submission.taskID, let task = try await tasks.get(id) else { return nil }
        guard task.user == submission.caller.user else {
            throw APIError(.conflict, "task id in use", detail: "the taskId '\(id)' names another user's task; choose another id", extra: ["field": "taskId"])
        }
        return task
    }
}

import Appliance
import Foundation
import Hummingbird
import SDBoxCore
import Scheduler

/// The task API's short answer: a task's id and where it stands (`{taskId, status}`), as an async
/// submission gets it; a synchronous submission's also carries `ossUrl`, the signed URLs of its images;
/// `message` (the original's) and `error` say why a task ended without success, and a cancellation's
/// `message` is the original's `success`.
struct TaskAnswer: Encodable {
    let taskId: String
    let status: String
    var ossUrl: [String]?
    var error: String?
    var message: String?

    init(_ task: TaskRecord, ossUrl: [String]? = nil, message: String? = nil) {
        taskId = task.id
        status = task.state.apiName
        self.ossUrl = ossUrl
        error = task.error
        self.message = message ?? task.error
    }
}

extension Services {
    /// The answer to a submitted task, for every submission route: `{taskId, status}` at once with
    /// `Request-Type: async`; else, given `whenAnswered` (the A1111 routes), what it makes of the worker's
    /// answer as soon as it comes (``EarlyOutcome``: the outcome is recorded meanwhile), or, without one,
    /// what `whenFinal` makes of the task once final (so a task API caller finds the task final on disk);
    /// either with the task's id in the `taskId` header. A task that failed with nothing to give (a
    /// passthrough call's worker answer is something) is a 500 with its reason and id.
    func answer(
        _ task: TaskRecord, request: Request, whenAnswered: ((Data) throws -> Response)? = nil, whenFinal: (TaskRecord) async throws -> Response
    ) async throws -> Response {
        var response: Response
        if request.headers[.requestType]?.lowercased() == "async" {
            response = try .json(TaskAnswer(task))
        } else if let whenAnswered, let early = await scheduler.runner.waitForEarlyOutcome(task.id) {
            response = try whenAnswered(early.answer)
        } else {
            guard let final = await scheduler.runner.waitUntilFinal(task.id) else { throw APIError.taskNotFound(task.id) }
            if final.state == .failed && final.result == nil { throw APIError.taskDidNotSucceed(final) }
            response = try await whenFinal(final)
        }
        response.headers[.clientTaskID] = task.id
        return response
    }
}

extension APIError {
    /// A synchronous caller's answer when its task did not succeed: 500 with the reason, the task's id
    /// and status (`task failed`, or `task cancelled` with no result to give).
    static func taskDidNotSucceed(_ task: TaskRecord) -> APIError {
        APIError(
            .internalServerError, task.state == .failed ? "task failed" : "task \(task.state.rawValue)", detail: task.error ?? "",
            extra: ["taskId": .string(task.id), "status": .string(task.state.apiName)]
        )
    }
}

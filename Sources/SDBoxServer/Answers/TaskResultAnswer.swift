import Appliance
import Foundation
import SDBoxCore

/// A task's result as `GET /tasks/{id}/result` answers it, and as webhooks and event streams send it:
/// always `taskId`, `status`, `images` (object keys), `ossUrl` (signed URLs), `info` and `parameters`
/// (empty until there is a result, as the original answers); a passthrough call's `responseStatus`,
/// `contentType` and `response` (its JSON answer, images replaced by their keys) or `responseUrl` (a
/// signed URL of an answer that is not JSON); `error` and the original's `message` when it failed or was
/// cancelled; and, on the result route, the webhook's state and attempts.
struct TaskResultAnswer: Encodable {
    let taskId: String
    let status: String
    var images: [String] = []
    var ossUrl: [String] = []
    var info: JSONValue = [:]
    var parameters: JSONValue = [:]
    var responseStatus: ExplicitNull<Int>?
    var contentType: ExplicitNull<String>?
    var response: JSONValue?
    var responseUrl: String?
    var error: String?
    var message: String?
    var webhook: Webhook?

    /// A webhook's delivery: where it goes, its state and every attempt.
    struct Webhook: Encodable {
        let url: String
        let state: TaskCallback.State
        let attempts: [Attempt]
    }

    /// One delivery attempt: when (ISO 8601), the receiver's status or the error, and how long it took.
    struct Attempt: Encodable {
        let at: String
        @ExplicitNull var status: Int?
        @ExplicitNull var error: String?
        let milliseconds: Int
    }
}

extension Services {
    /// `task`'s result with signed URLs under `base`; with `webhook`, its webhook's delivery too.
    func resultAnswer(of task: TaskRecord, base: String, webhook: Bool = true) -> TaskResultAnswer {
        var answer = TaskResultAnswer(taskId: task.id, status: task.state.apiName)
        if let result = task.result {
            answer.images = result.images
            answer.ossUrl = signedURLs(for: result.images, base: base)
            if task.kind == .passthrough {
                answer.responseStatus = ExplicitNull(wrappedValue: result.status)
                answer.contentType = ExplicitNull(wrappedValue: result.contentType)
                answer.response = result.response
                answer.responseUrl = result.bodyKey.flatMap { signedURLs(for: [$0], base: base).first }
            } else {
                answer.info = result.info.isNull ? [:] : result.info
                answer.parameters = result.parameters.isNull ? [:] : result.parameters
            }
        }
        answer.error = task.error
        answer.message = task.error
        if webhook, let callback = task.callback {
            answer.webhook = .init(
                url: callback.url, state: callback.state,
                attempts: callback.attempts.map { .init(at: $0.at.ISO8601Format(), status: $0.status, error: $0.error, milliseconds: $0.milliseconds) }
            )
        }
        return answer
    }
}

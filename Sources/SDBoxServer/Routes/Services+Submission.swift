import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import SDBoxCore

extension Services {
    /// How `request` submits a task: its caller, its webhook (taken out of `body`, see
    /// ``callback(taking:request:)``), the id its client chose in the `taskId` header (400 when it is
    /// not 1 to 64 letters, digits, `-` or `_`), and whether it waits for the outcome (not `Request-Type: async`).
    func submission(taking body: inout JSONValue, request: Request, context: SDBoxRequestContext) throws -> Submission {
        var submission = Submission(
            caller: context.caller, callback: try callback(taking: &body, request: request), waits: request.headers[.requestType]?.lowercased() != "async"
        )
        guard let id = request.headers[.clientTaskID], !id.isEmpty else { return submission }
        guard TaskID.isWellFormed(id) else {
            throw APIError(.badRequest, "invalid taskId", detail: "the taskId header must be 1 to 64 letters, digits, '-' or '_'", extra: ["field": "taskId"])
        }
        submission.taskID = id
        return submission
    }

    /// The webhook a request asks for: `callback_url`, taken out of its JSON body, else the
    /// `X-Callback-URL` header; nil when neither is given, 400 when the URL is not http(s).
    func callback(taking body: inout JSONValue, request: Request) throws -> TaskCallback? {
        var url = request.headers[.callbackURL]
        if let field = body["callback_url"] {
            body["callback_url"] = nil
            if !field.isNull {
                guard let text = field.stringValue else {
                    throw APIError(.badRequest, "invalid request", detail: "field 'callback_url' must be a string", extra: ["field": "callback_url"])
                }
                url = text
            }
        }
        guard let url, !url.isEmpty else { return nil }
        do {
            try TaskCallback.validate(url)
        } catch {
            throw APIError.badRequest(error)
        }
        if !configuration.webhooks.allowPrivateNetworks, let refusal = OutboundTarget.webhooks.refusalWithoutLookup(of: url) {
            throw APIError(.badRequest, "invalid request", detail: "field 'callback_url': \(refusal)", extra: ["field": "callback_url"])
        }
        return TaskCallback(url: url, baseURL: urlBase(for: request))
    }
}

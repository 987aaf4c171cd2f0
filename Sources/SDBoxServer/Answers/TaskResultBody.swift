import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import ObjectStore
import Scheduler
import SDBoxCore

extension Services {
    /// Signed, expiring URLs for object keys, absolute when the base is known.
    func signedURLs(for keys: [String], request: Request) -> [String] {
        signedURLs(for: keys, base: urlBase(for: request))
    }

    /// The base of the signed URLs answered to `request`: `publicURL`, else the request's own host.
    func urlBase(for request: Request) -> String {
        configuration.http.publicURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 } ?? request.head.authority.map { "http://\($0)" } ?? ""
    }

    /// Signed, expiring URLs for object keys under `base`.
    func signedURLs(for keys: [String], base: String) -> [String] {
        let expires = Int64(Date().timeIntervalSince1970) + Int64(configuration.http.urlExpirySeconds)
        return keys.map { base + signer.signedPath(for: $0, expires: expires) }
    }

    /// A task's result as `GET /tasks/{id}/result` answers it, and as webhooks and event streams send it:
    /// `taskId`, `status`, `images` (object keys) and `ossUrl` (signed URLs); a generation's `info` and
    /// `parameters`; a passthrough call's `responseStatus`, `contentType` and `response` (its JSON answer,
    /// images replaced by their keys) or `responseUrl` (a signed URL of an answer that is not JSON);
    /// `error`; and, with `webhook`, the webhook's state and attempts.
    func resultBody(of task: TaskRecord, base: String, webhook: Bool = true) -> [String: JSONValue] {
        var body: [String: JSONValue] = ["taskId": .string(task.id), "status": .string(task.state.rawValue)]
        if let result = task.result {
            body["images"] = .array(result.images.map { .string($0) })
            body["ossUrl"] = .array(signedURLs(for: result.images, base: base).map { .string($0) })
            if task.kind == .passthrough {
                body["responseStatus"] = result.status.map { .integer(Int64($0)) } ?? .null
                body["contentType"] = result.contentType.map { .string($0) } ?? .null
                if let response = result.response { body["response"] = response }
                if let key = result.bodyKey { body["responseUrl"] = signedURLs(for: [key], base: base).first.map { .string($0) } }
            } else {
                body["info"] = result.info
                body["parameters"] = result.parameters
            }
        }
        if let error = task.error { body["error"] = .string(error) }
        if webhook, let callback = task.callback {
            body["webhook"] = [
                "url": .string(callback.url), "state": .string(callback.state.rawValue),
                "attempts": .array(callback.attempts.map { attempt in
                    [
                        "at": .string(attempt.at.ISO8601Format()),
                        "status": attempt.status.map { .integer(Int64($0)) } ?? .null,
                        "error": attempt.error.map { .string($0) } ?? .null,
                        "milliseconds": .integer(Int64(attempt.milliseconds)),
                    ]
                }),
            ]
        }
        return body
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
        if !configuration.webhooks.allowPrivateNetworks, let refusal = WebhookTarget.refusalWithoutLookup(of: url) {
            throw APIError(.badRequest, "invalid request", detail: "field 'callback_url': \(refusal)", extra: ["field": "callback_url"])
        }
        return TaskCallback(url: url, baseURL: urlBase(for: request))
    }
}

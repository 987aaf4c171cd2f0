import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import SDBoxCore

extension Services {
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

import Foundation

/// A task's webhook: the URL its final result is POSTed to when it ends, and every delivery attempt.
public struct TaskCallback: Codable, Sendable, Equatable {
    /// Where a callback stands.
    public enum State: String, Codable, Sendable {
        /// Not delivered yet: the task is not final, or a retry is due.
        case pending
        /// The receiver answered 2xx.
        case delivered
        /// Every attempt failed; no more are made.
        case failed
    }

    /// The receiver, an `http` or `https` URL.
    public var url: String
    /// The base of the signed image URLs in the payload (the public URL, or the submitting request's host).
    public var baseURL: String?
    public var state: State
    public var attempts: [WebhookAttempt]

    public init(url: String, baseURL: String?) {
        self.url = url
        self.baseURL = baseURL
        self.state = .pending
        self.attempts = []
    }

    /// Checks that `url` can be a callback: an absolute `http` or `https` URL with a host.
    public static func validate(_ url: String) throws(RequestValidationError) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            ["http", "https"].contains(scheme), let host = components.host, !host.isEmpty, url.utf8.count <= 2048
        else {
            throw RequestValidationError(field: "callback_url", message: "field 'callback_url' must be an http or https URL")
        }
    }
}

/// One try at delivering a task's webhook.
public struct WebhookAttempt: Codable, Sendable, Equatable {
    public var at: Date
    /// The receiver's HTTP status, when it answered.
    public var status: Int?
    /// Why the attempt failed (a non-2xx answer, a refused connection, a timeout).
    public var error: String?
    public var milliseconds: Int

    public init(at: Date, status: Int?, error: String?, milliseconds: Int) {
        self.at = at
        self.status = status
        self.error = error
        self.milliseconds = milliseconds
    }
}

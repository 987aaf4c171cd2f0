import HTTPTypes
import SDBoxCore

/// A request sdbox refuses, or a failure it reports, with the HTTP status and the JSON fields it is
/// answered with: `error` (what went wrong, short), `detail` (why, for a person), the original's `message`
/// (the detail, else the error: what its clients show) and `code` (the HTTP status, as the original's
/// error schema has it), with any `extra`. The HTTP module turns it into the answer; what refuses it does
/// not need to know about HTTP beyond the status.
public struct APIError: Error, Sendable {
    public let status: HTTPResponse.Status
    public let error: String
    public let detail: String
    /// Extra fields for the body, e.g. the `taskId` of a failed task.
    public var extra: [String: JSONValue] = [:]

    public init(_ status: HTTPResponse.Status, _ error: String, detail: String = "", extra: [String: JSONValue] = [:]) {
        self.status = status
        self.error = error
        self.detail = detail
        self.extra = extra
    }

    /// The JSON body of the answer.
    public var body: JSONValue {
        var body = extra
        body["error"] = .string(error)
        body["detail"] = .string(detail)
        body["message"] = .string(detail.isEmpty ? error : detail)
        body["code"] = .integer(Int64(status.code))
        return .object(body)
    }

    public static func badRequest(_ error: RequestValidationError) -> APIError {
        var extra: [String: JSONValue] = [:]
        if let field = error.field { extra["field"] = .string(field) }
        return APIError(.badRequest, "invalid request", detail: error.message, extra: extra)
    }

    public static func taskNotFound(_ id: String) -> APIError {
        APIError(.notFound, "task not found", detail: "no task with id '\(id)'")
    }
}

extension HTTPResponse.Status {
    /// 507: the disk cannot hold what was sent.
    public static let insufficientStorage = Self(code: 507, reasonPhrase: "Insufficient Storage")
}

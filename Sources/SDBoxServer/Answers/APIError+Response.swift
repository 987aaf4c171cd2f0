import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ObjectStore
import SDBoxCore
import Scheduler
import Storage

extension APIError: HTTPResponseError {
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = try Response.json(body, status: status)
        // A failed task's id is in the header too, as on every answer to a submission.
        if let id = extra["taskId"]?.stringValue { response.headers[.clientTaskID] = id }
        // A refusal that says when to try again (a rate limit, a quota) says it in the header too.
        if let seconds = extra["retryAfter"]?.integerValue { response.headers[.retryAfter] = String(seconds) }
        return response
    }
}

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
        try .json(body, status: status)
    }
}

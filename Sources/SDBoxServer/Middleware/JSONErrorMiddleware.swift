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

/// Turns every error a route throws into the JSON error shape, so no client ever sees an empty or
/// HTML error body, and logs the unexpected ones.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError {
            let detail = error.body ?? ""
            switch error.status {
            case .notFound: throw APIError(.notFound, "not found", detail: detail.isEmpty ? "no route for \(request.method) \(request.uri.path)" : detail)
            case .contentTooLarge: throw APIError(.contentTooLarge, "request body too large", detail: detail)
            default: throw APIError(error.status, error.status.reasonPhrase, detail: detail)
            }
        } catch let error as any HTTPResponseError {
            throw APIError(error.status, error.status.reasonPhrase, detail: ErrorSummary(error).description)
        } catch let error as LMDBError where error.isOutOfSpace {
            context.logger.error("database full", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            throw APIError(.insufficientStorage, "disk full", detail: "the database cannot grow: \(error); nothing was changed")
        } catch let error as ObjectStoreError where error.isDiskFull {
            throw APIError(.insufficientStorage, "disk full", detail: "\(error)")
        } catch let error where PostgresStoreError.isUnstorableText(error) {
            throw APIError(.badRequest, "invalid request", detail: "a text holds a NUL character (\\u0000), which the database cannot store; nothing was changed")
        } catch let error where PostgresStoreError.unavailability(of: error) != nil {
            let reason = PostgresStoreError.unavailability(of: error)?.description ?? ""
            context.logger.warning("database unavailable", metadata: ["path": "\(request.uri.path.prefix(200))", "error": "\(reason)"])
            throw APIError(.serviceUnavailable, "database unavailable", detail: "\(reason); nothing was changed, try again", extra: ["retryAfter": 5])
        } catch {
            let summary = ErrorSummary(error)
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path.prefix(200))", "error": "\(summary)"])
            throw APIError(.internalServerError, "internal error", detail: summary.description)
        }
    }
}

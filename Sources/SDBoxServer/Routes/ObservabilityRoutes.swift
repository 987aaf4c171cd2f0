import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import Metrics
import NIOCore
import Prometheus
import SDBoxCore
import Scheduler
import Storage
import Synchronization

/// Health, figures and the API's description: `GET /healthz` (the process is up), `GET /readyz` (the store
/// answers and the scheduler runs), `GET /metrics` (Prometheus text format, series named `sdbox_*`) and
/// `GET /openapi.json`.
struct ObservabilityRoutes {
    let services: Services
    let registry: PrometheusCollectorRegistry

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/healthz") { _, _ in try Response.json(["status": "ok"]) }
        router.get("/readyz") { _, _ in
            var problems: [String] = []
            do {
                _ = try await services.tasks.recent(limit: 1)
            } catch {
                problems.append("task store: \(error)")
            }
            if await !services.scheduler.isRunning { problems.append("scheduler not running") }
            guard problems.isEmpty else {
                throw APIError(.serviceUnavailable, "not ready", detail: problems.joined(separator: "; "))
            }
            return try Response.json(["status": "ready"])
        }
        let document = (try? Response.json(OpenAPIDocument.make(services.configuration))) ?? Response(status: .internalServerError)
        router.get("/openapi.json") { _, _ in document }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer()))
            )
        }
    }
}

/// Counts requests by route, method and status (`sdbox_http_requests_total`) and times them
/// (`sdbox_http_request_duration_seconds`). The route is the matched pattern, e.g. `/tasks/{id}/result`,
/// so task ids do not multiply the series. The metric handles of each route are made once and kept: a
/// request costs a lookup, not a registration.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let handles = RequestMetricHandles()

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let status: Int
        let response: Response
        do {
            response = try await next(request, context)
            status = Int(response.status.code)
        } catch {
            let code = (error as? any HTTPResponseError)?.status.code ?? 500
            record(request, context: context, status: Int(code), since: start)
            throw error
        }
        record(request, context: context, status: status, since: start)
        return response
    }

    func record(_ request: Request, context: Context, status: Int, since start: ContinuousClock.Instant) {
        let (counter, timer) = handles.handles(route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: status)
        counter.increment()
        timer.recordNanoseconds(start.duration(to: .now).nanoseconds)
    }
}

/// The request metrics' handles by route, method and status, made on first use.
final class RequestMetricHandles: Sendable {
    struct Key: Hashable {
        let route: String
        let method: String
        let status: Int
    }

    private let made = Mutex<[Key: (Metrics.Counter, Metrics.Timer)]>([:])

    func handles(route: String, method: String, status: Int) -> (Metrics.Counter, Metrics.Timer) {
        let key = Key(route: route, method: method, status: status)
        if let known = made.withLock({ $0[key] }) { return known }
        let new = (
            Metrics.Counter(label: "sdbox_http_requests_total", dimensions: [("route", route), ("method", method), ("status", "\(status)")]),
            Metrics.Timer(label: "sdbox_http_request_duration_seconds", dimensions: [("route", route), ("method", method)])
        )
        return made.withLock { made in
            if let known = made[key] { return known }
            made[key] = new
            return new
        }
    }
}

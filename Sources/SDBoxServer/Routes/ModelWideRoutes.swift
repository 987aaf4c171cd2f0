import Appliance
import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import SDBoxCore
import Scheduler
import Storage

/// A1111's endpoints that change a worker's state, answered by sdbox, whose registry and scheduler are
/// the truth (A1111's `POST /sdapi/v1/options` stays per caller, see ``A1111Routes``):
///
/// - `POST /sdapi/v1/refresh-checkpoints|refresh-vae|refresh-loras|refresh-embeddings`: the registry
///   rescans the model folders, and every warm worker of every pool is told to refresh its own lists (in
///   the background: A1111 takes its queue lock for that itself, so a busy worker refreshes after its task).
/// - `POST /sdapi/v1/reload-checkpoint`: answers once a worker of the model is warm, starting one through
///   the scheduler (its queue, its caps) when none is.
/// - `POST /sdapi/v1/unload-checkpoint`: stops the model's idle workers; busy ones finish their task, and
///   a pool kept warm (`minInstances`) starts them again.
///
/// The model is the one named by `X-SD-Model` (or `stable_diffusion_model` in a JSON body), else the
/// caller's default. reload- and unload-checkpoint need an admin key (``RouteAccess``).
struct ModelWideRoutes {
    let services: Services

    static let refreshes = ["refresh-checkpoints", "refresh-vae", "refresh-loras", "refresh-embeddings"]

    func register(on router: Router<SDBoxRequestContext>) {
        let api = router.group("/sdapi/v1")
        for path in Self.refreshes {
            api.post(RouterPath(path)) { _, _ in
                try await services.models.refresh()
                let endpoints = await services.scheduler.warmWorkerEndpoints()
                let logger = services.logger
                Task { await Self.broadcast("/sdapi/v1/\(path)", to: endpoints, logger: logger) }
                return try Response.json(JSONValue.null)
            }
        }
        api.post("reload-checkpoint") { request, context in
            let model = try await model(of: request, context: context)
            if await services.scheduler.warmWorkerEndpoint(model: model) == nil {
                try await services.catalog.ensurePool(model: model)
                do {
                    try await services.scheduler.lease(model: model, user: context.user).release()
                } catch let error as LeaseError {
                    throw APIError(.serviceUnavailable, "no worker", detail: error.description)
                }
            }
            return try Response.json(A1111.Empty())
        }
        api.post("unload-checkpoint") { request, context in
            let model = try await model(of: request, context: context)
            _ = await services.scheduler.stopIdleWorkers(model: model)
            return try Response.json(A1111.Empty())
        }
    }

    /// The model a model-wide call is about (admins only: see ``RouteAccess``).
    func model(of request: Request, context: SDBoxRequestContext) async throws -> String {
        let body = try? await request.body.collect(upTo: 64 << 10)
        let named = request.headers[.sdModel] ?? body.flatMap { try? JSONValue(parsing: $0.readableBytesView) }?["stable_diffusion_model"]?.stringValue
        return try await services.model(named: named, for: context.user).name
    }

    /// POSTs `path` to each worker, logging the ones that fail (a worker without the endpoint answers 404).
    static func broadcast(_ path: String, to endpoints: [WorkerEndpoint], logger: Logger) async {
        let client = HTTPWorkerClient()
        await withDiscardingTaskGroup { group in
            for endpoint in endpoints {
                group.addTask {
                    do throws(WorkerCallError) {
                        _ = try await client.call(endpoint, method: .POST, path: path, timeout: .seconds(600))
                    } catch {
                        logger.debug("worker did not refresh", metadata: ["worker": "\(endpoint.baseURL)", "path": "\(path)", "error": "\(error)"])
                    }
                }
            }
        }
    }
}

import Foundation
import Hummingbird
import Logging
import SDBoxCore

/// Settings of a reference worker process.
public struct ReferenceWorkerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var checkpointPath: String
    public var pace: ReferencePace
    /// Time spent loading beyond reading the file, standing for moving the weights to a GPU.
    public var loadTime: Duration
    /// Time spent before loading, standing for a real worker's process start (A1111 imports torch and its
    /// modules for 15 to 60 s before it reads a checkpoint).
    public var startTime: Duration
    /// Time a checkpoint parked in system RAM (`/sdapi/v1/unload-checkpoint`) takes to come back to the GPU.
    public var reloadTime: Duration
    /// GPU memory its loaded checkpoint stands for, reported by `/sdapi/v1/memory` (none while parked).
    public var gpuMemoryMiB: Int
    /// `user:password` every call must carry as HTTP basic authentication (A1111's `--api-auth`).
    public var apiAuth: String?

    public init(
        host: String = "127.0.0.1", port: Int, checkpointPath: String, pace: ReferencePace = ReferencePace(), loadTime: Duration = .zero,
        startTime: Duration = .zero, reloadTime: Duration = .zero, gpuMemoryMiB: Int = 0, apiAuth: String? = nil
    ) {
        self.host = host
        self.port = port
        self.checkpointPath = checkpointPath
        self.pace = pace
        self.loadTime = loadTime
        self.startTime = startTime
        self.reloadTime = reloadTime
        self.gpuMemoryMiB = gpuMemoryMiB
        self.apiAuth = apiAuth
    }
}

/// The reference worker: an A1111-compatible HTTP server for one checkpoint that draws test images.
///
/// Like A1111 it starts (``ReferenceWorkerConfiguration/startTime``), loads its checkpoint before it
/// listens (validating the file and reading all of it to hash it, so the load cost grows with the file's
/// size), serves `/internal/ping` once ready, runs one generation at a time, reports per-step progress,
/// and parks its checkpoint in system RAM and brings it back (`/sdapi/v1/unload-checkpoint`,
/// `/sdapi/v1/reload-checkpoint`; a generation on a parked checkpoint brings it back first).
public enum ReferenceWorkerServer {
    struct Context: RequestContext {
        var coreContext: CoreRequestContextStorage
        init(source: ApplicationRequestContextSource) { coreContext = .init(source: source) }
        var maxUploadSize: Int { 512 << 20 }
    }

    /// Loads the checkpoint and serves until shut down (SIGTERM or SIGINT).
    public static func run(_ configuration: ReferenceWorkerConfiguration, logger: Logger) async throws {
        try await Task.sleep(for: configuration.startTime)
        let started = ContinuousClock.now
        let path = configuration.checkpointPath
        try Checkpoint.validate(path: path)
        let checkpoint = Checkpoint(path: path, sha256: try Checkpoint.sha256(ofFileAt: path))
        try await Task.sleep(for: configuration.loadTime)
        logger.info("Model loaded in \(started.duration(to: .now)): \(checkpoint.title)")
        let engine = ReferenceEngine(checkpoint: checkpoint, pace: configuration.pace, loadTime: configuration.loadTime, reloadTime: configuration.reloadTime)
        let app = Application(
            router: router(engine: engine, configuration: configuration),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "sdbox-reference-worker"),
            logger: logger
        )
        try await app.runService()
    }

    static func router(engine: ReferenceEngine, configuration: ReferenceWorkerConfiguration) -> Router<Context> {
        let router = Router(context: Context.self)
        if let apiAuth = configuration.apiAuth { router.add(middleware: BasicAuthMiddleware(credentials: apiAuth)) }
        // Ready; `loaded` says whether the checkpoint is on the "GPU" or parked in system RAM.
        router.get("/internal/ping") { _, _ in json(["status": "ok", "loaded": .bool(engine.isLoaded)]) }
        // The GPU memory the process holds, in the shape of A1111's torch figures: its checkpoint's while
        // loaded, none while parked.
        router.get("/sdapi/v1/memory") { _, _ in
            let held = JSONValue.integer(engine.isLoaded ? Int64(configuration.gpuMemoryMiB) << 20 : 0)
            let peak = JSONValue.integer(Int64(configuration.gpuMemoryMiB) << 20)
            return json(["ram": [:], "cuda": ["active": ["current": held, "peak": peak], "reserved": ["current": held, "peak": peak]]])
        }
        // Generations and extras; passthrough calls reach the worker's other routes as they are.
        for kind in TaskKind.allCases where kind != .passthrough {
            router.post(RouterPath(kind.workerPath)) { request, context in
                let body = try await request.body.collect(upTo: context.maxUploadSize)
                guard let fields = (try? JSONValue(parsing: body.readableBytesView))?.objectValue else {
                    return json(["error": "HTTPException", "detail": "request body must be a JSON object"], status: .unprocessableContent)
                }
                do {
                    if TaskKind.generations.contains(kind) {
                        return json(try JSONValue(encoding: try await engine.generate(kind: kind, body: fields)))
                    }
                    return json(try await engine.postprocess(kind: kind, body: .object(fields)))
                } catch let error as GenerationInputError {
                    return json(["error": "ValidationError", "detail": .string(error.description)], status: .unprocessableContent)
                }
            }
        }
        router.get("/sdapi/v1/progress") { request, _ in
            // As A1111, the preview comes unless the caller asks to skip it.
            let preview = request.uri.queryParameters["skip_current_image"].map { $0.lowercased() != "true" } ?? true
            return json(try JSONValue(encoding: engine.progress(preview: preview)))
        }
        router.post("/sdapi/v1/unload-checkpoint") { _, _ in
            await engine.unload()
            return json([:])
        }
        router.post("/sdapi/v1/reload-checkpoint") { _, _ in
            await engine.reload()
            return json([:])
        }
        router.post("/sdapi/v1/interrupt") { _, _ in
            engine.interrupt()
            return json([:])
        }
        router.post("/sdapi/v1/skip") { _, _ in
            engine.skip()
            return json([:])
        }
        router.get("/sdapi/v1/options") { _, _ in json(.object(engine.currentOptions)) }
        router.post("/sdapi/v1/options") { request, context in
            let body = try await request.body.collect(upTo: context.maxUploadSize)
            guard let changes = (try? JSONValue(parsing: body.readableBytesView))?.objectValue else {
                return json(["error": "HTTPException", "detail": "options must be a JSON object"], status: .unprocessableContent)
            }
            if let wanted = changes["sd_model_checkpoint"]?.stringValue {
                do {
                    try await engine.switchCheckpoint(to: wanted)
                } catch {
                    // A1111 answers an unknown checkpoint with its RuntimeError.
                    return json(["error": "RuntimeError", "detail": "", "body": "", "errors": .string("\(error)")], status: .internalServerError)
                }
            }
            engine.setOptions(changes)
            return json(nil)
        }
        router.get("/sdapi/v1/sd-models") { _, _ in json(try JSONValue(encoding: engine.checkpoints)) }
        router.get("/sdapi/v1/samplers") { _, _ in json(try JSONValue(encoding: A1111.samplers)) }
        router.get("/sdapi/v1/schedulers") { _, _ in json(try JSONValue(encoding: A1111.schedulers)) }
        router.get("/sdapi/v1/upscalers") { _, _ in json(try JSONValue(encoding: A1111.upscalers)) }
        ReferenceExtensionRoutes.register(on: router, engine: engine, configuration: configuration)
        // Any other path: FastAPI's 404, as A1111 answers it.
        for method: HTTPRequest.Method in [.get, .post, .put, .patch, .delete] {
            router.on("/**", method: method) { _, _ in json(["detail": "Not Found"], status: .notFound) }
        }
        return router
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        let bytes = (try? value.encodedBytes()) ?? Array("null".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// A1111's `--api-auth`: a call without the right HTTP basic authentication gets 401.
struct BasicAuthMiddleware: RouterMiddleware {
    typealias Context = ReferenceWorkerServer.Context
    let expected: String

    init(credentials: String) { expected = "Basic " + Data(credentials.utf8).base64EncodedString() }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.headers[.authorization] == expected else {
            var response = ReferenceWorkerServer.json(["detail": "Incorrect username or password"], status: .unauthorized)
            response.headers[.wwwAuthenticate] = "Basic"
            return response
        }
        return try await next(request, context)
    }
}

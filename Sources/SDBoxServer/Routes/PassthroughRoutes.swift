import Appliance
import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import ObjectStore
import Scheduler
import SDBoxCore
import Storage

/// Passthrough: the `/sdapi/v1` endpoints sdbox forwards, and every path that is neither sdbox's own nor a
/// worker's internals (`/controlnet/...`, any extension's API), as the original forwards them, to a worker of the checkpoint the call
/// names (`X-SD-Model`, or `stable_diffusion_model` in a JSON body), else of the caller's chosen default
/// model, else of a warm worker's model, else of the first checkpoint.
///
/// - A plain call is streamed both ways. A `GET` goes at once to a warm worker of the model, even a busy
///   one (A1111 answers its GET endpoints beside a generation); any other call waits for the worker like
///   a task does (``Scheduler/lease(model:user:)``: same queue, same caps), so it never runs beside a
///   generation on the same worker.
/// - `Task-Flag: true`, `Request-Type: async` or a webhook (`callback_url`, `X-Callback-URL`) persist the
///   call as a task: `async` answers `{taskId, status}` at once; otherwise the answer is the worker's, once
///   the task is done, with the task's id in `Task-Id`.
struct PassthroughRoutes {
    let services: Services

    static let methods: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete]
    /// Worker answer headers that are not passed on (hop-by-hop, and those sdbox's server sets).
    static let droppedFromAnswer: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length", "date", "server",
    ]

    /// Registers the catch-all routes; register them after sdbox's own, which win over them, and after
    /// the web pages' file middleware, which serves `/web/...` when the catch-all answers 404.
    func register(on router: Router<SDBoxRequestContext>) {
        for prefix in ["/sdapi/v1/**", "/**"] {
            for method in Self.methods {
                router.on(RouterPath(prefix), method: method) { request, context in
                    try await forward(request, context: context)
                }
            }
        }
    }

    func forward(_ request: Request, context: SDBoxRequestContext) async throws -> Response {
        let path = try workerPath(of: request)
        var call = try await PassthroughCall(request: request, path: path, limit: services.configuration.http.maxBodyBytes)
        var json = JSONValue.null
        if case .json(let body) = call.body { json = body }
        let submission = try services.submission(taking: &json, request: request, context: context)
        if case .json = call.body { call.body = .json(json) }
        let model = try await model(named: call.model, user: context.user)
        guard request.headers[.requestType]?.lowercased() == "async" || request.headers[.taskFlag]?.lowercased() == "true" || submission.callback != nil
        else {
            return try await stream(call, model: model, user: context.user)
        }
        if let existing = try await services.existingTask(for: submission) {
            return try await services.answer(existing, request: request) { try await answer(of: $0) }
        }
        let workerBody = try await call.persisted(limit: services.configuration.http.maxBodyBytes).json
        let task = try await services.enqueue(kind: .passthrough, model: model, workerBody: workerBody, priority: 0, submission: submission)
        return try await services.answer(task, request: request) { try await answer(of: $0) }
    }

    /// The request's path as the worker would read it, if sdbox forwards it: 400 for a path that cannot be
    /// read, 403 for the worker's server controls and internals, 404 for sdbox's own paths (the web pages'
    /// files among them, which the file middleware then serves) and A1111 endpoints sdbox keeps.
    func workerPath(of request: Request) throws -> WorkerPath {
        if RouteAccess.isWebAsset(path: request.uri.path) {
            throw APIError(.notFound, "not found", detail: "no web page file at \(request.uri.path)")
        }
        let path: WorkerPath
        do {
            path = try WorkerPath(raw: request.uri.path)
        } catch {
            throw APIError(.badRequest, "invalid path", detail: "\(error)")
        }
        if let endpoint = path.a1111Endpoint, WorkerPath.workerControls.contains(endpoint) {
            throw APIError(.forbidden, "refused", detail: "sdbox starts and stops the worker processes; \(path.decoded) is not passed to them")
        }
        if path.isWorkerInternal {
            throw APIError(.forbidden, "refused", detail: "\(path.decoded) is a worker's internal or web UI path, which sdbox does not pass on")
        }
        guard path.isForwarded(method: request.method.rawValue, reserved: PassthroughPrefix.reserved) else {
            throw APIError(
                .notFound, "not found",
                detail: "\(request.method) \(path.decoded) is not an endpoint sdbox answers or forwards to workers (see docs/reliability.md)"
            )
        }
        return path
    }

    /// The checkpoint whose worker takes a call: the one it names, else the caller's chosen default, else
    /// the model of the most recently used warm worker, else the first checkpoint.
    func model(named name: String?, user: String) async throws -> String {
        if name == nil, try await services.catalog.options(forUser: user)["sd_model_checkpoint"] == nil,
            let warm = await services.scheduler.warmModels().first
        {
            return warm
        }
        return try await services.model(named: name, for: user).name
    }

    /// Forwards a plain call and streams the worker's answer back. A GET tries a warm worker first (a
    /// worker that stops under it is left for a lent one).
    func stream(_ call: PassthroughCall, model: String, user: String) async throws -> Response {
        if call.method == .get, !call.body.isStream, let endpoint = await services.scheduler.warmWorkerEndpoint(model: model),
            let response = try? await send(call, to: endpoint, model: model)
        {
            return relay(response, lease: nil)
        }
        // A worker starts as a task's would, in the model's pool.
        try await services.catalog.ensurePool(model: model)
        let lease: WorkerLease
        do {
            lease = try await services.scheduler.lease(model: model, user: user)
        } catch let error as LeaseError {
            throw APIError(.serviceUnavailable, "no worker", detail: error.description)
        }
        do {
            return relay(try await send(call, to: lease.endpoint, model: model), lease: lease)
        } catch {
            await lease.release()
            throw APIError(.badGateway, "worker unreachable", detail: "\(error)")
        }
    }

    func send(_ call: PassthroughCall, to endpoint: WorkerEndpoint, model: String) async throws -> HTTPClientResponse {
        var outgoing = HTTPClientRequest(url: endpoint.url(call.path))
        outgoing.method = NIOHTTP1.HTTPMethod(rawValue: call.method.rawValue)
        for field in call.headers { outgoing.headers.add(name: field.name.rawName, value: field.value) }
        for (name, value) in endpoint.headers.sorted(by: { $0.key < $1.key }) { outgoing.headers.replaceOrAdd(name: name, value: value) }
        switch call.body {
        case .none:
            break
        case .json(let json):
            outgoing.headers.replaceOrAdd(name: "Content-Type", value: "application/json")
            outgoing.body = .bytes(ByteBuffer(bytes: try json.encoded()))
        case .bytes(let buffer):
            outgoing.body = .bytes(buffer)
        case .stream(let body, let length):
            outgoing.body = .stream(body, length: length.map { .known(Int64($0)) } ?? .unknown)
        }
        let timeout = await services.scheduler.settings(ofPool: model).taskTimeoutSeconds ?? 3600
        return try await HTTPWorkerClient.http.execute(outgoing, timeout: .seconds(Int64(timeout)))
    }

    /// The worker's answer as the client's, its body streamed; the lease, if any, ends with the body.
    func relay(_ response: HTTPClientResponse, lease: WorkerLease?) -> Response {
        var headers = HTTPFields()
        for (name, value) in response.headers where !Self.droppedFromAnswer.contains(name.lowercased()) {
            if let field = HTTPField.Name(name) { headers.append(HTTPField(name: field, value: value)) }
        }
        let body = response.body
        return Response(
            status: HTTPResponse.Status(code: Int(response.status.code)), headers: headers,
            body: ResponseBody(contentLength: response.headers.first(name: "Content-Length").flatMap { Int($0) }) { writer in
                do {
                    for try await chunk in body { try await writer.write(chunk) }
                    try await writer.finish(nil)
                } catch {
                    await lease?.release()
                    throw error
                }
                await lease?.release()
            }
        )
    }

    /// The worker's answer to a call persisted as a task, rebuilt from the task: the JSON with its images
    /// put back, or the body as stored; the task's id in `Task-Id`.
    func answer(of task: TaskRecord) async throws -> Response {
        guard let result = task.result, let status = result.status else {
            throw APIError.taskDidNotSucceed(task)
        }
        var headers: HTTPFields = [.taskID: task.id]
        if let type = result.contentType { headers[.contentType] = type }
        var body = ByteBuffer()
        if let response = result.response {
            var images: [String: String] = [:]
            for key in result.images { images[key] = try await services.objects.get(key).base64EncodedString() }
            body = ByteBuffer(bytes: try EmbeddedImages.inline(images, into: response).encoded())
        } else if let key = result.bodyKey {
            body = ByteBuffer(bytes: try await services.objects.get(key))
        }
        return Response(status: HTTPResponse.Status(code: status), headers: headers, body: .init(byteBuffer: body))
    }
}

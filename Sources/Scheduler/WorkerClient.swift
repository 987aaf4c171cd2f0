import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDBoxCore

/// Why a call to a worker did not give an answer.
public enum WorkerCallError: Error, Sendable, CustomStringConvertible {
    /// The worker answered with an error status; `detail` is its error message.
    case rejected(status: Int, detail: String)
    /// The worker could not be reached or the connection broke (it crashed, hung or is gone).
    case unreachable(String)

    public var description: String {
        switch self {
        case .rejected(let status, let detail): "worker answered \(status): \(detail)"
        case .unreachable(let reason): "worker unreachable: \(reason)"
        }
    }
}

/// A request to a worker's HTTP API.
public struct WorkerCall: Sendable, Equatable {
    public var method: HTTPMethod
    /// Path and query.
    public var path: String
    public var contentType: String?
    /// Further headers, e.g. those a passthrough call came with.
    public var headers: [String: String]
    public var body: Data?

    public init(method: HTTPMethod, path: String, contentType: String? = nil, headers: [String: String] = [:], body: Data? = nil) {
        self.method = method
        self.path = path
        self.contentType = contentType
        self.headers = headers
        self.body = body
    }
}

/// A worker's whole answer to a ``WorkerCall``.
public struct WorkerResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String?
    public var body: Data

    public init(status: Int, contentType: String?, body: Data) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public var isSuccess: Bool { (200..<300).contains(status) }

    /// A readable message from an error answer.
    public var detail: String { Self.errorDetail(body) }

    /// A readable message from an A1111 error body (`{"error": ..., "detail": ..., "errors": ...}`).
    static func errorDetail(_ data: Data) -> String {
        guard let json = try? JSONValue(parsing: data) else {
            return String(decoding: data.prefix(500), as: UTF8.self)
        }
        let parts = ["error", "detail", "errors"].compactMap { key -> String? in
            guard let value = json[key], !value.isNull else { return nil }
            if let text = value.stringValue { return text.isEmpty ? nil : text }
            return (try? value.encoded()).map { String(decoding: $0, as: UTF8.self) }
        }
        return parts.isEmpty ? String(decoding: data.prefix(500), as: UTF8.self) : parts.joined(separator: ": ")
    }
}

/// What sdbox asks of a worker's A1111 API: one call, answered whole. The scheduler and the task runner
/// reach workers only through this, so that their rules (retry, cancel, a worker lost under a task) can
/// be exercised with an in-memory worker; ``HTTPWorkerClient`` is the real one.
public protocol WorkerClient: Sendable {
    /// Sends a call to the worker at `endpoint` and returns its whole answer, whatever its status.
    func send(_ call: WorkerCall, to endpoint: WorkerEndpoint, timeout: TimeAmount) async throws(WorkerCallError) -> WorkerResponse
}

extension WorkerClient {
    /// Whether the worker at `endpoint` is ready: it answers `/internal/ping` (the reference worker, A1111's UI
    /// mode) or `/sdapi/v1/sd-models` (every A1111-compatible API).
    public func ping(_ endpoint: WorkerEndpoint, timeout: TimeAmount = .seconds(2)) async -> Bool {
        for path in ["/internal/ping", "/sdapi/v1/sd-models"] {
            if (try? await call(endpoint, method: .GET, path: path, timeout: timeout)) != nil { return true }
        }
        return false
    }

    /// Calls `path` and returns the body of a 2xx answer.
    public func call(_ endpoint: WorkerEndpoint, method: HTTPMethod, path: String, body: Data? = nil, timeout: TimeAmount) async throws(WorkerCallError) -> Data {
        let call = WorkerCall(method: method, path: path, contentType: body == nil ? nil : "application/json", body: body)
        let answer = try await send(call, to: endpoint, timeout: timeout)
        guard answer.isSuccess else { throw .rejected(status: answer.status, detail: answer.detail) }
        return answer.body
    }

    /// POSTs to `path` for a change of the worker's state (a checkpoint moved or switched), and says how
    /// it went (no failure: a 2xx answer) and how many seconds it took.
    public func post(_ endpoint: WorkerEndpoint, path: String, body: Data? = nil, timeout: TimeAmount) async -> (failure: WorkerCallError?, seconds: Double) {
        let started = ContinuousClock.now
        do throws(WorkerCallError) {
            _ = try await call(endpoint, method: .POST, path: path, body: body, timeout: timeout)
            return (nil, started.duration(to: .now).seconds)
        } catch {
            return (error, started.duration(to: .now).seconds)
        }
    }

    /// The worker's current progress, if it answers.
    public func progress(_ endpoint: WorkerEndpoint) async -> A1111.Progress? {
        guard let data = try? await call(endpoint, method: .GET, path: "/sdapi/v1/progress?skip_current_image=false", timeout: .seconds(5)) else {
            return nil
        }
        return try? JSONDecoder().decode(A1111.Progress.self, from: data)
    }

    /// The GPU memory the worker says its process holds, in MiB (A1111's `/sdapi/v1/memory`: torch's
    /// reserved bytes, else its active ones); nil when it does not say.
    public func gpuMemoryInUse(_ endpoint: WorkerEndpoint) async -> Int? {
        guard let data = try? await call(endpoint, method: .GET, path: "/sdapi/v1/memory", timeout: .seconds(5)),
            let cuda = (try? JSONValue(parsing: data))?["cuda"],
            let bytes = cuda["reserved"]?["current"]?.integerValue ?? cuda["active"]?["current"]?.integerValue
        else { return nil }
        return Int(bytes >> 20)
    }

    /// Asks the worker to stop its current generation.
    public func interrupt(_ endpoint: WorkerEndpoint) async {
        _ = try? await call(endpoint, method: .POST, path: "/sdapi/v1/interrupt", timeout: .seconds(5))
    }
}

/// Calls workers' A1111 API with AsyncHTTPClient: processes on 127.0.0.1, and remote servers over HTTP or
/// HTTPS (certificates checked).
public struct HTTPWorkerClient: WorkerClient {
    let http: HTTPClient
    /// The largest answer accepted from a worker.
    let maxResponseBytes = 1 << 30

    public init(http: HTTPClient = HTTPWorkerClient.http) {
        self.http = http
    }

    /// The HTTP client for workers, kept for the life of the process. It never follows a redirect: a
    /// worker's 3xx is its answer, passed back as it is, never a second request sdbox makes on its own
    /// (a worker's `307` to `/sdapi/v1/server-kill` must not reach it).
    public static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Sends a call and returns the worker's whole answer, whatever its status.
    public func send(_ call: WorkerCall, to endpoint: WorkerEndpoint, timeout: TimeAmount) async throws(WorkerCallError) -> WorkerResponse {
        var request = HTTPClientRequest(url: endpoint.url(call.path))
        request.method = call.method
        for (name, value) in endpoint.headers.sorted(by: { $0.key < $1.key }) { request.headers.add(name: name, value: value) }
        for (name, value) in call.headers.sorted(by: { $0.key < $1.key }) { request.headers.add(name: name, value: value) }
        if let body = call.body {
            request.headers.add(name: "Content-Type", value: call.contentType ?? "application/octet-stream")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            let response = try await http.execute(request, timeout: timeout)
            let bytes = try await response.body.collect(upTo: maxResponseBytes)
            return WorkerResponse(
                status: Int(response.status.code), contentType: response.headers.first(name: "Content-Type"), body: Data(bytes.readableBytesView)
            )
        } catch {
            throw .unreachable("\(error)")
        }
    }
}

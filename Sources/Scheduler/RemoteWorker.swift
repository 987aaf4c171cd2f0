import Foundation
import Synchronization

/// A remote A1111-compatible server (A1111, Forge or SD.Next on another machine) that joins the pools
/// (`workers.remote`): sdbox neither starts nor stops it, it probes it and gives it the tasks of the
/// checkpoint it holds.
public struct RemoteWorkerSettings: Sendable, Equatable {
    /// Its name, unique among remote workers.
    public var name: String
    /// Its A1111 API root, `http://` or `https://` (certificates are checked).
    public var url: String
    /// The GPU memory it has, for the reports.
    public var gpuMemoryMiB: Int?
    /// The models (sdbox's names) it may serve; nil for any it holds.
    public var models: [String]?
    /// Headers sent with every call to it.
    public var headers: [String: String]
    /// `user:password` for HTTP basic authentication (A1111's `--api-auth`).
    public var basicAuth: String?
    /// Whether sdbox may change the checkpoint it holds (`POST /sdapi/v1/options {sd_model_checkpoint}`)
    /// to serve another model it has: a global setting of the server, so only for a server sdbox alone uses.
    public var switchModels: Bool

    public init(
        name: String, url: String, gpuMemoryMiB: Int? = nil, models: [String]? = nil, headers: [String: String] = [:], basicAuth: String? = nil,
        switchModels: Bool = false
    ) {
        self.name = name
        self.url = url
        self.gpuMemoryMiB = gpuMemoryMiB
        self.models = models
        self.headers = headers
        self.basicAuth = basicAuth
        self.switchModels = switchModels
    }

    /// Where to call it: its URL with its headers and basic authorization.
    public var endpoint: WorkerEndpoint {
        var headers = headers
        if let basicAuth { headers["Authorization"] = "Basic " + Data(basicAuth.utf8).base64EncodedString() }
        return WorkerEndpoint(baseURL: url, headers: headers)
    }

    /// Its URL as shown and logged: any user and password in it replaced by `***`.
    public var displayURL: String {
        guard var components = URLComponents(string: url), components.user != nil || components.password != nil else { return url }
        components.user = "***"
        components.password = nil
        return components.string ?? url
    }

    /// Why these settings cannot be used, or nil.
    public var problem: String? {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), ["http", "https"].contains(scheme), parsed.host != nil else {
            return "url must be an http:// or https:// URL, not '\(displayURL)'"
        }
        if name.isEmpty { return "name must not be empty" }
        if let basicAuth, !basicAuth.contains(":") { return "basicAuth must be user:password" }
        return nil
    }
}

/// A remote server in the worker table: what its tasks run on (``WorkerSlot``), the checkpoints its last
/// probe found, and the signal that fails a task's call when the server is given up.
public final class RemoteWorker: WorkerSlot {
    /// What its last probe found.
    public struct Probe: Sendable {
        /// The checkpoint it holds, as sdbox names models (its file name); nil when none it may serve.
        public var model: String?
        /// The checkpoints it has.
        public var checkpoints: [String]
        /// How long the probe took.
        public var latencyMilliseconds: Double
    }

    public let id: Int
    public let settings: RemoteWorkerSettings
    public let endpoint: WorkerEndpoint
    let state = Mutex<(model: String, probe: Probe?)>(("", nil))
    let lost = Mutex(StopSignal())

    init(id: Int, settings: RemoteWorkerSettings) {
        self.id = id
        self.settings = settings
        self.endpoint = settings.endpoint
    }

    public var model: String { state.withLock { $0.model } }
    /// What its last successful probe found.
    public var lastProbe: Probe? { state.withLock { $0.probe } }

    func probed(_ probe: Probe) {
        state.withLock { $0 = (probe.model ?? "", probe) }
    }

    /// It loaded `model`'s checkpoint at sdbox's request.
    func switched(to model: String) {
        state.withLock { $0.model = model }
    }

    /// The models it may be switched to: those it has (and may serve), when `switchModels` allows.
    var switchable: Set<String> {
        guard settings.switchModels, let probe = lastProbe else { return [] }
        return Set(probe.checkpoints.filter { settings.models?.contains($0) ?? true })
    }

    public func whileAlive<T: Sendable>(_ call: @escaping @Sendable () async throws(WorkerCallError) -> T) async throws(WorkerCallError) -> T {
        try await lost.withLock { $0 }.guarding(call, failure: "the remote worker \(settings.name) stopped answering")
    }

    /// Fails the call under way: the server stopped answering. Later calls start afresh.
    public func abandon() {
        lost.withLock { signal -> StopSignal in
            defer { signal = StopSignal() }
            return signal
        }.fire()
    }

    /// sdbox's name for the checkpoint a server reports (`sd_model_checkpoint`, e.g.
    /// `sd15/alpha.safetensors [6ce0161689]`): its file name, without folder or short hash.
    static func modelName(ofCheckpoint title: String) -> String {
        var name = title
        if let bracket = name.range(of: " [", options: .backwards), name.hasSuffix("]") { name = String(name[..<bracket.lowerBound]) }
        return String(name.split(separator: "/").last ?? Substring(name))
    }
}

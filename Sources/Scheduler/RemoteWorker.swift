import Foundation
import SDBoxCore
import Synchronization

extension RemoteWorkerSettings {
    /// Where to call it: its URL with its headers and basic authorization.
    public var endpoint: WorkerEndpoint {
        var headers = headers
        if let basicAuth { headers["Authorization"] = "Basic " + Data(basicAuth.utf8).base64EncodedString() }
        return WorkerEndpoint(baseURL: url, headers: headers)
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

    /// Why a probe failed.
    public struct ProbeFailure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    public let id: Int
    public let settings: RemoteWorkerSettings
    /// Which of the server's `maxTasks` slots this is (from 1).
    public let slot: Int
    public let endpoint: WorkerEndpoint
    let state = Mutex<(model: String, probe: Probe?, error: String?)>(("", nil, nil))
    let lost = Mutex(StopSignal())

    init(id: Int, settings: RemoteWorkerSettings, slot: Int = 1) {
        self.id = id
        self.settings = settings
        self.slot = slot
        self.endpoint = settings.endpoint
    }

    public var model: String { state.withLock { $0.model } }

    /// A server others may use too could hold another checkpoint by the time a call arrives.
    public var namesCheckpointInCalls: Bool { true }
    /// What its last successful probe found.
    public var lastProbe: Probe? { state.withLock { $0.probe } }

    /// Why its last probe failed; nil once one succeeds.
    public var lastError: String? { state.withLock { $0.error } }

    func probed(_ probe: Probe) {
        state.withLock { $0 = (probe.model ?? "", probe, nil) }
    }

    /// A probe failed; returns whether this is a new reason (worth a log line).
    func failed(_ reason: String) -> Bool {
        state.withLock { state in
            defer { state.error = reason }
            return state.error != reason
        }
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

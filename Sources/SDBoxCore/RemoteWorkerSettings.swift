import Foundation

/// A remote A1111-compatible server (A1111, Forge or SD.Next on another machine) that joins the pools
/// (`workers.remote`): sdbox neither starts nor stops it, it probes it and gives it the tasks of the
/// checkpoint it holds.
public struct RemoteWorkerSettings: Codable, Sendable, Equatable {
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
    /// How many tasks it is given at once (default 1; A1111 runs one at a time and queues the rest).
    public var maxTasks: Int?
    /// Whether sdbox may change the checkpoint it holds (`POST /sdapi/v1/options {sd_model_checkpoint}`)
    /// to serve another model it has: a global setting of the server, so only for a server sdbox alone uses.
    public var switchModels: Bool

    public init(
        name: String, url: String, gpuMemoryMiB: Int? = nil, models: [String]? = nil, headers: [String: String] = [:], basicAuth: String? = nil,
        maxTasks: Int? = nil, switchModels: Bool = false
    ) {
        self.name = name
        self.url = url
        self.gpuMemoryMiB = gpuMemoryMiB
        self.models = models
        self.headers = headers
        self.basicAuth = basicAuth
        self.maxTasks = maxTasks
        self.switchModels = switchModels
    }

    /// How many tasks it is given at once.
    public var taskSlots: Int { maxTasks ?? 1 }

    /// These settings as shown: the password of `basicAuth` and any credentials in the URL masked,
    /// header values too (they often carry tokens).
    public var masked: RemoteWorkerSettings {
        var shown = self
        shown.url = displayURL
        shown.basicAuth = basicAuth.map { ($0.split(separator: ":", maxSplits: 1).first.map(String.init) ?? "") + ":***" }
        shown.headers = headers.mapValues { _ in "***" }
        return shown
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
        if !(1...16).contains(taskSlots) { return "maxTasks must be from 1 to 16" }
        if switchModels && taskSlots > 1 { return "switchModels needs maxTasks 1: a switch changes the checkpoint under the server's other tasks" }
        return nil
    }
}

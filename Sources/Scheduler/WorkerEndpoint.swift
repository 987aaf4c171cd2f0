/// Where a worker's A1111 API answers, and what every call to it carries: a process sdbox started, on
/// 127.0.0.1, or a remote server (`workers.remote`) with its own URL, headers and credentials.
public struct WorkerEndpoint: Sendable, Hashable {
    /// Scheme, host, port and any path prefix, without a trailing slash.
    public let baseURL: String
    /// Headers sent with every call (a remote server's own, and its basic authorization).
    public let headers: [String: String]

    public init(baseURL: String, headers: [String: String] = [:]) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.headers = headers
    }

    /// A worker process sdbox started, listening on `port` of 127.0.0.1.
    public static func local(port: Int) -> WorkerEndpoint { WorkerEndpoint(baseURL: "http://127.0.0.1:\(port)") }

    /// The URL of `path` (path and query) on this worker.
    public func url(_ path: String) -> String { baseURL + path }
}

/// What a task runs on: a worker process sdbox started (``WorkerProcess``) or a remote server it did not
/// (``RemoteWorker``).
public protocol WorkerSlot: AnyObject, Sendable {
    /// Its id in the scheduler's worker table.
    var id: Int { get }
    /// The checkpoint it holds.
    var model: String { get }
    var endpoint: WorkerEndpoint { get }
    /// Whether a generation must name its checkpoint (a server others may switch to another one).
    var namesCheckpointInCalls: Bool { get }
    /// Runs `call`, which fails if the worker is lost first (its process ends, or it is abandoned).
    func whileAlive<T: Sendable>(_ call: @escaping @Sendable () async throws(WorkerCallError) -> T) async throws(WorkerCallError) -> T
    /// Gives up on a worker that stopped answering under a task: a process is killed, a remote server
    /// taken out of service until it answers again.
    func abandon()
}

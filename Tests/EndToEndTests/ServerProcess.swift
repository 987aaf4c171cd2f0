import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ImageCodec
import SDBoxCore
@testable import Scheduler

/// A real `sdbox serve` process started from the binary `swift build` made, on a free port, with its own
/// data folder, driven over HTTP by the tests.
final class ServerProcess: @unchecked Sendable {
    // Safety: `pid` is only changed by start/stop, which the serialized tests call from one task at a time.
    let dataDirectory: String
    let configPath: String
    private(set) var port: Int
    private(set) var pid: pid_t = 0
    var baseURL: String { "http://127.0.0.1:\(port)" }
    var logPath: String { dataDirectory + "/server.log" }

    /// The binary under test: `$SDBOX_BINARY`, else `.build/debug/sdbox` in the package.
    static var binary: String {
        if let path = ProcessInfo.processInfo.environment["SDBOX_BINARY"] { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/sdbox").path
    }

    /// Starts a server with `config` (YAML) in a new data folder, or in `dataDirectory` to restart one.
    /// Variables the server is started with, over the test process's.
    let environment: [String: String]

    init(config: String = "", dataDirectory: String? = nil, models: [String: Data] = [:], environment: [String: String] = [:]) async throws {
        self.environment = environment
        self.dataDirectory = dataDirectory ?? FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-e2e-\(UUID().uuidString)").path
        let modelsFolder = self.dataDirectory + "/models/Stable-diffusion"
        try FileManager.default.createDirectory(atPath: modelsFolder, withIntermediateDirectories: true)
        for (name, data) in models {
            try data.write(to: URL(fileURLWithPath: modelsFolder + "/" + name))
        }
        configPath = self.dataDirectory + "/sdbox.yaml"
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        guard let port = FreePort.allocate() else { throw TestFailure("no free port") }
        self.port = port
        do {
            // Two servers of tests running at once may be given the same free port: the one that could not
            // listen starts again on another.
            var attempts = 0
            while true {
                do {
                    try await start()
                    break
                } catch is PortTaken where attempts < 5 {
                    attempts += 1
                    guard let other = FreePort.allocate() else { throw TestFailure("no free port") }
                    self.port = other
                }
            }
        } catch {
            // A folder made here goes with a server that never started (the error quotes its log).
            if dataDirectory == nil { try? FileManager.default.removeItem(atPath: self.dataDirectory) }
            throw error
        }
    }

    /// Starts (or restarts) the process and waits until `/healthz` answers.
    func start() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw TestFailure("\(Self.binary) not found: run `swift build` before the tests (scripts/test does)")
        }
        pid = try spawn(
            [Self.binary, "serve", "--port", "\(port)", "--data-dir", dataDirectory, "--config", configPath],
            output: logPath, environment: environment
        )
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if waitpid(pid, nil, WNOHANG) == pid {
                if log.contains("already in use") { throw PortTaken() }
                throw TestFailure("sdbox exited at start: \(log)")
            }
            // The client keeps retrying a refused connection until the request times out; 5 s, as a machine
            // loaded by the rest of the suite can take seconds to answer (1 s timed out every try in CI).
            // The connection is not kept: a test's own idle timeout could close it just as a request reuses it.
            if let answer = try? await response(.GET, "/healthz", headers: [("Connection", "close")], timeout: .seconds(5)), answer.status == 200 {
                // The answer may come from another test's server on the same port: then this one exits.
                if await Self.listens(pid: pid, port: port) { return }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        killAndReap(pid)
        throw TestFailure("sdbox did not answer /healthz: \(log)")
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Another process listens on the server's port.
    struct PortTaken: Error {}

    /// Whether process `pid` holds the socket listening on `port`: the server that answers is this one, not
    /// another test's that was given the same port. `ss` finds the listening socket's inode, filtered in the
    /// kernel; reading /proc/net/tcp instead walks every socket of the machine (thousands while the suite
    /// runs, seconds of kernel time a read), on the few threads all the tests' async code shares.
    static func listens(pid: pid_t, port: Int) async -> Bool {
        guard let (status, output) = try? await runProgram(["/usr/bin/ss", "-Hltne", "sport = :\(port)"]), status == 0 else { return false }
        let listening = Set(output.split(whereSeparator: \.isWhitespace).filter { $0.hasPrefix("ino:") }.map { String($0.dropFirst(4)) })
        return !listening.isEmpty && !PortListener.socketInodes(of: pid).isDisjoint(with: listening)
    }

    /// Sends `signal` to sdbox alone and waits for it to exit. A graceful stop can take seconds, so the wait
    /// polls rather than blocking one of the few threads every test's async code runs on.
    func stop(signal: Int32 = SIGTERM) async {
        guard pid > 0 else { return }
        kill(pid, signal)
        // Cancelled meanwhile (a test's time limit), it is left to `destroy` to reap.
        if (try? await exitStatus(of: pid)) != nil { pid = 0 }
    }

    /// Sends `signal` to sdbox alone; true once it has exited, false if it is still running after `limit`.
    func stop(signal: Int32, within limit: Duration) async throws -> Bool {
        guard pid > 0 else { return true }
        kill(pid, signal)
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if waitpid(pid, nil, WNOHANG) == pid {
                pid = 0
                return true
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// Kills sdbox and everything in its process group, and removes the data folder.
    func destroy() {
        if pid > 0 {
            kill(-pid, SIGKILL)
            killAndReap(pid)
            pid = 0
        }
        for worker in workerPIDs() { kill(worker, SIGKILL) }
        // Workers of any kind (not only sdbox's own) by the pid files sdbox keeps for them.
        WorkerReaper.reap(in: dataDirectory + "/run")
        try? FileManager.default.removeItem(atPath: dataDirectory)
    }

    /// Ids of the worker processes serving this server's models: its children, and (once it is gone) the
    /// workers whose command lines name a file in its data folder.
    func workerPIDs() -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        let server = pid
        return entries.compactMap { Int32($0) }.filter { candidate in
            guard let cmdline = FileManager.default.contents(atPath: "/proc/\(candidate)/cmdline") else { return false }
            let arguments = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard arguments.contains("worker") else { return false }
            let parent = ProcFile.statFields(of: candidate).flatMap { $0.count > 1 ? Int32($0[1]) : nil }
            return (server != 0 && parent == server) || arguments.contains { $0.hasPrefix(dataDirectory + "/") }
        }
    }

    // MARK: HTTP

    func request(_ method: HTTPMethod, _ path: String, body: Data? = nil, headers: [(String, String)] = []) async throws -> (Int, Data) {
        let answer = try await response(method, path, body: body, headers: headers)
        return (answer.status, answer.body)
    }

    /// The tests' HTTP client. It never follows a redirect, so that a test sees sdbox's own status; the path
    /// is sent as written (`//`, `/./`, `%XX` kept).
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Makes an API key with `sdbox keys add` (as an operator would, beside the running server).
    func addKey(user: String, role: String) async throws -> String {
        let (status, output) = try await runSDBox(["keys", "add", "--data-dir", dataDirectory, "--user", user, "--role", role])
        guard status == 0, let key = output.split(whereSeparator: \.isWhitespace).last.map(String.init) else {
            throw TestFailure("sdbox keys add failed: \(output)")
        }
        return key
    }

    /// Sends a request and answers the whole response: status, headers and body.
    func response(_ method: HTTPMethod, _ path: String, body: Data? = nil, headers: [(String, String)] = [], timeout: TimeAmount = .seconds(60)) async throws -> HTTPAnswer {
        var request = HTTPClientRequest(url: path.hasPrefix("http") ? path : baseURL + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await Self.client.execute(request, timeout: timeout)
        let bytes = try await response.body.collect(upTo: 256 << 20)
        return HTTPAnswer(status: Int(response.status.code), headers: response.headers, body: Data(bytes.readableBytesView))
    }

    /// Sends a request and parses the JSON answer.
    func json(_ method: HTTPMethod, _ path: String, _ body: JSONValue? = nil, headers: [(String, String)] = []) async throws -> (Int, JSONValue) {
        let (status, data) = try await request(method, path, body: try body?.encoded(), headers: headers)
        guard let value = try? JSONValue(parsing: data) else {
            throw TestFailure("\(method) \(path) answered \(status) with non-JSON: \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
        return (status, value)
    }

    /// Polls a task's result until its status is final.
    func waitForTask(_ id: String, timeout: Duration = .seconds(60)) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (_, result) = try await json(.GET, "/tasks/\(id)/result")
            if let status = result["status"]?.stringValue, ["succeeded", "failed", "cancelled"].contains(status) { return result }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("task \(id) did not finish: \(log)")
    }
}

/// Whether process `pid` is gone (or a zombie waiting for its reaper) within `limit`.
func processEnds(_ pid: pid_t, within limit: Duration = .seconds(10)) async throws -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        guard let state = ProcFile.statFields(of: pid)?.first, state != "Z" else { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return false
}

/// A program in one of the virtual environments `scripts/install-test-deps.sh` makes under
/// `~/.cache/sdbox` (`$XDG_CACHE_HOME/sdbox`), e.g. `testTool("webuiapi-venv", "python")`.
func testTool(_ venv: String, _ program: String) -> String {
    let cache = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"] ?? (NSHomeDirectory() + "/.cache")
    return "\(cache)/sdbox/\(venv)/bin/\(program)"
}

/// The `Authorization` header for an API key.
func bearer(_ key: String) -> [(String, String)] { [("Authorization", "Bearer \(key)")] }

/// A response as the tests look at it.
struct HTTPAnswer {
    let status: Int
    let headers: HTTPHeaders
    let body: Data
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Spawns a process in its own process group with a clean signal mask, its output going to a file.
///
/// - Parameter descriptors: Further descriptors of the child, each a copy of one of ours (which should
///   be close-on-exec, so that only the copy reaches the child).
/// - Parameter environment: Variables set for the child over ours.
func spawn(_ arguments: [String], output: String, descriptors: [Int32: Int32] = [:], environment: [String: String] = [:]) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    for (child, parent) in descriptors.sorted(by: { $0.key < $1.key }) {
        posix_spawn_file_actions_adddup2(&actions, parent, child)
    }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setpgroup(&attributes, 0)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
    let argv = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let variables = ProcessInfo.processInfo.environment.merging(environment) { _, own in own }
    let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { envp.forEach { free($0) } }
    let rc = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
    guard rc == 0 else { throw TestFailure("posix_spawn \(arguments[0]) failed: \(rc)") }
    return pid
}

/// Runs the sdbox binary with `arguments` to its end; returns its exit status and what it printed.
func runSDBox(_ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
    try await runProgram([ServerProcess.binary] + arguments, environment: environment)
}

/// Runs a program (`arguments[0]`) to its end; returns its exit status and what it printed.
func runProgram(_ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-run-\(UUID().uuidString).log").path
    defer { unlink(output) }
    let pid = try spawn(arguments, output: output, environment: environment)
    let status = try await exitStatus(of: pid)
    let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    return (status, text)
}

/// Waits for child `pid` to exit, and reaps it; its exit status. The child is polled, so that no thread of
/// the tests' async code is held while it runs; a cancelled wait throws, leaving the child unreaped.
func exitStatus(of pid: pid_t) async throws -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, WNOHANG) == 0 {
        try await Task.sleep(for: .milliseconds(20))
    }
    return (status >> 8) & 0xff
}

extension ServerProcess {
    /// Polls `GET /workers` until `condition` holds of its whole answer, returning it then.
    func waitForWorkers(timeout: Duration = .seconds(30), _ condition: (JSONValue) -> Bool) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let answer = try await json(.GET, "/workers").1
            if condition(answer) { return answer }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("/workers never matched; last: \(try await json(.GET, "/workers").1)\n\(log)")
    }
}

/// A helper server process (a stand-in for a worker on another machine) that ended before it answered.
struct HelperExited: Error {}

/// Waits until the helper server `pid` answers `url`'s `/internal/ping` while it still runs: anything but a
/// 503 (which it answers while it loads; a 401 asks for credentials it has). ``HelperExited`` when the
/// process ended first (it is reaped then).
func waitUntilAnswering(pid: pid_t, url: String) async throws {
    for _ in 0..<200 {
        if waitpid(pid, nil, WNOHANG) == pid { throw HelperExited() }
        if let answer = try? await ServerProcess.client.execute(HTTPClientRequest(url: url + "/internal/ping"), timeout: .seconds(1)),
            answer.status != .serviceUnavailable, waitpid(pid, nil, WNOHANG) == 0
        {
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestFailure("the helper server at \(url) did not start")
}

/// Starts a helper server whose `arguments` take the port it must listen on, on a port picked free, and
/// waits until it answers. A concurrent test can take the port before the helper binds it: the helper
/// then exits, and is started again on another port. Its output goes to `output`.
func spawnOnFreePort(output: String, _ arguments: (Int) -> [String]) async throws -> (pid: pid_t, port: Int) {
    for attempt in 1...5 {
        guard let port = FreePort.allocate() else { throw TestFailure("no free port") }
        let pid = try spawn(arguments(port), output: output)
        do {
            try await waitUntilAnswering(pid: pid, url: "http://127.0.0.1:\(port)")
            return (pid, port)
        } catch is HelperExited where attempt < 5 {
            continue
        } catch {
            let log = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            throw TestFailure("\(error); its output: \(log.suffix(2000))")
        }
    }
    throw TestFailure("the helper server did not start")
}

/// Kills a process the test started with SIGKILL and reaps it.
func killAndReap(_ pid: pid_t) {
    kill(pid, SIGKILL)
    waitpid(pid, nil, 0)
}

/// A small PNG, base64-encoded, for img2img inputs.
func solidPNGBase64(width: Int, height: Int, rgb: (UInt8, UInt8, UInt8)) throws -> String {
    var pixels: [UInt8] = []
    for _ in 0..<(width * height) { pixels += [rgb.0, rgb.1, rgb.2] }
    return try PNGCodec.encode(PixelImage(width: width, height: height, pixels: pixels)).base64EncodedString()
}

import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDBoxCore

/// `sdbox-bench control-plane`: what sdbox does around the generations, at load, with keys required (as
/// the .deb runs):
///
/// - **Status reads**: `GET /tasks/{id}/progress` and `/result` of a finished task, against nginx serving
///   the very same bytes as a static file and Hummingbird alone serving them from memory
///   (``StaticBytesServer``), in the same run (wrk, alternating rounds), with the ratios.
/// - **A deep queue**: the resident memory of sdbox with `--queued` tasks waiting.
/// - **Enqueue rate**: durable async submissions (`POST /txt2img`, `Request-Type: async`) a second from
///   many connections, onto that queue; each is answered only once its task is on disk.
///
/// The worker sdbox starts takes minutes per task, so what is submitted stays queued.
struct ControlPlaneBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control-plane",
        abstract: "Status reads against nginx and Hummingbird alone on the same bytes, durable enqueues a second, memory with a deep queue."
    )

    @Option(help: "Seconds of each wrk run.")
    var seconds = 10

    @Option(help: "Connections of wrk for status reads and enqueues.")
    var connections = 256

    @Option(help: "Alternating rounds of status reads (sdbox, then nginx).")
    var rounds = 2

    @Option(help: "Tasks queued for the memory figure (0 to skip).")
    var queued = 100_000

    @Option(help: "The sdbox binary (default: beside this one).")
    var sdbox: String?

    @Option(help: "The nginx binary.")
    var nginx = "/usr/sbin/nginx"

    func run() async throws {
        let binary = sdbox ?? SchedulingBenchmark.siblingBinary()
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw ValidationError("\(binary) not found; build it first") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/wrk") else { throw ValidationError("wrk is needed: apt install wrk") }
        guard FileManager.default.isExecutableFile(atPath: nginx) else { throw ValidationError("nginx is needed: apt install nginx-light") }
        let workspace = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: workspace + "/www", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try await measure(http: http, binary: binary, workspace: workspace)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    func measure(http: HTTPClient, binary: String, workspace: String) async throws {
        print("sdbox-bench control-plane: wrk -t2 -c\(connections), \(seconds) s a run, \(ProcessInfo.processInfo.activeProcessorCount) cores, load average \(LoadAverage.now())")
        let data = workspace + "/sdbox"
        try FileManager.default.createDirectory(atPath: data + "/models/Stable-diffusion", withIntermediateDirectories: true)
        try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: data + "/models/Stable-diffusion/bench.safetensors"))
        func addKey(user: String, role: String) throws -> String {
            try BenchProcess.output(of: [binary, "keys", "add", "--data-dir", data, "--user", user, "--role", role])
                .split(whereSeparator: \.isWhitespace).last.map(String.init) ?? ""
        }
        let key = try addKey(user: "bench", role: "user")
        let admin = try addKey(user: "operator", role: "admin")
        // A step at 512x512 takes a minute (one at 64x64 about a second): a long task after the first one
        // holds the only worker, so that what is submitted then stays queued.
        let config = """
            scheduler: {maxInstances: 1}
            limits: {maxQueuedPerUser: 1000000, maxQueuedBytesPerUser: 1099511627776}
            workers:
              reference: {stepMilliseconds: 60000}
            """
        try config.write(toFile: data + "/sdbox.yaml", atomically: true, encoding: .utf8)
        guard let sdboxPort = FreePort.allocate(), let nginxPort = FreePort.allocate(), let stackPort = FreePort.allocate() else { throw BenchmarkError("no free port") }
        let server = BenchProcess(
            [binary, "serve", "--port", "\(sdboxPort)", "--data-dir", data, "--config", data + "/sdbox.yaml", "--require-api-keys", "--log-level", "warning"],
            log: data + "/server.log"
        )
        let web = BenchProcess([nginx, "-p", workspace, "-c", try writeNginxConfiguration(port: nginxPort, workspace: workspace)], log: workspace + "/nginx.log")
        var stackServer: BenchProcess?
        do {
            try await http.waitUntilAnswering(port: sdboxPort, path: "/healthz", timeout: .seconds(120))
            let sdboxURL = "http://127.0.0.1:\(sdboxPort)"
            let auth = ["Authorization": "Bearer \(key)"]
            let task = try await http.answer(sdboxURL + "/txt2img", method: .POST, headers: auth, json: Data(#"{"prompt":"bench","steps":1,"width":64,"height":64}"#.utf8))
            guard let id = try JSONValue(parsing: task)["taskId"]?.stringValue else { throw BenchmarkError("no taskId in \(String(decoding: task, as: UTF8.self))") }
            _ = try await http.answer(
                sdboxURL + "/txt2img", method: .POST, headers: auth.merging(["Request-Type": "async"]) { $1 },
                json: Data(#"{"prompt":"the long task","steps":30,"width":512,"height":512}"#.utf8)
            )
            let idle = Self.memory(of: server.processID)

            var sizes: [String: Int] = [:]
            for what in ["progress", "result"] {
                let bytes = try await http.answer(sdboxURL + "/tasks/\(id)/\(what)", headers: auth)
                try bytes.write(to: URL(fileURLWithPath: workspace + "/www/\(what)"))
                sizes[what] = bytes.count
            }
            // Hummingbird alone on the same bytes: what sdbox's HTTP stack answers with nothing of sdbox's.
            let stack = BenchProcess(
                [CommandLine.arguments[0], "static-bytes", "--port", "\(stackPort)", "--folder", workspace + "/www"], log: workspace + "/static-bytes.log"
            )
            stackServer = stack
            try await http.waitUntilAnswering(port: stackPort, path: "/healthz", timeout: .seconds(30), process: stack)

            print("\nstatus reads of a finished task (the same bytes from Hummingbird alone and from nginx as a static file):")
            print("what                                   requests/s     p50        p99      ratio to nginx, to Hummingbird alone")
            for what in ["progress", "result"] {
                for round in 1...rounds {
                    let own = try Self.wrk(url: sdboxURL + "/tasks/\(id)/\(what)", headers: auth, connections: connections, seconds: seconds)
                    let bare = try Self.wrk(url: "http://127.0.0.1:\(stackPort)/\(what)", headers: auth, connections: connections, seconds: seconds)
                    let reference = try Self.wrk(url: "http://127.0.0.1:\(nginxPort)/\(what)", headers: auth, connections: connections, seconds: seconds)
                    print(
                        own.line("sdbox /tasks/{id}/\(what) (\(sizes[what] ?? 0) B) #\(round)")
                            + String(format: "   %.2fx, %.2fx", own.requestsPerSecond / reference.requestsPerSecond, own.requestsPerSecond / bare.requestsPerSecond)
                    )
                    print(bare.line("Hummingbird alone, same bytes #\(round)") + String(format: "   %.2fx", bare.requestsPerSecond / reference.requestsPerSecond))
                    print(reference.line("nginx, same bytes #\(round)") + "   (load \(LoadAverage.now()))")
                }
            }

            let script = workspace + "/enqueue.lua"
            if queued > 0 {
                // Submissions until `queued` were accepted: each of wrk's two threads stops at its half, so
                // the figure is for the depth asked, not for whatever a run at full speed reached.
                var total = 1
                while total < queued {
                    let share = (queued - total + 1) / 2
                    try Self.enqueueScript(key: key, limitPerThread: share).write(toFile: script, atomically: true, encoding: .utf8)
                    let run = try Self.wrk(url: sdboxURL + "/txt2img", script: script, connections: 64, seconds: seconds)
                    guard run.requests > run.errors else { throw BenchmarkError("submissions failed: \(run.errors) errors") }
                    total += run.requests - run.errors
                }
                let depth = try JSONValue(parsing: try await http.answer(sdboxURL + "/workers", headers: ["Authorization": "Bearer \(admin)"]))["queues"]?.objectValue?
                    .values.compactMap(\.integerValue).reduce(Int64(0), +) ?? 0
                let full = Self.memory(of: server.processID)
                print("\nmemory with a deep queue (\(depth) tasks queued, \(total) submitted):")
                print("idle, one task done:     \(idle)")
                print("with the queue:          \(full)")
            }

            print("\ndurable async submissions (POST /txt2img, Request-Type: async)\(queued > 0 ? ", onto that queue" : ""):")
            try Self.enqueueScript(key: key).write(toFile: script, atomically: true, encoding: .utf8)
            let enqueue = try Self.wrk(url: sdboxURL + "/txt2img", script: script, connections: connections, seconds: seconds)
            print(enqueue.line("enqueue") + "   errors \(enqueue.errors), load \(LoadAverage.now())")
        } catch {
            await server.stop()
            await web.stop()
            await stackServer?.stop()
            throw error
        }
        await server.stop()
        await web.stop()
        await stackServer?.stop()
        print("\nload average at the end: \(LoadAverage.now())")
    }

    func writeNginxConfiguration(port: Int, workspace: String) throws -> String {
        let path = workspace + "/nginx.conf"
        let text = """
            daemon off;
            user root;
            worker_processes auto;
            pid \(workspace)/nginx.pid;
            error_log \(workspace)/nginx-error.log warn;
            events { worker_connections 4096; }
            http {
                access_log off;
                client_body_temp_path \(workspace)/nginx-body;
                proxy_temp_path \(workspace)/nginx-proxy;
                fastcgi_temp_path \(workspace)/nginx-fastcgi;
                uwsgi_temp_path \(workspace)/nginx-uwsgi;
                scgi_temp_path \(workspace)/nginx-scgi;
                keepalive_requests 1000000;
                server {
                    listen 127.0.0.1:\(port);
                    root \(workspace)/www;
                    default_type application/json;
                }
            }
            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A wrk script that submits async tasks; with `limitPerThread`, each thread stops once that many were
    /// accepted (wrk itself still runs its whole duration).
    static func enqueueScript(key: String, limitPerThread: Int? = nil) -> String {
        var script = """
            wrk.method = "POST"
            wrk.body = '{"prompt":"queued for the benchmark","steps":1,"width":512,"height":512}'
            wrk.headers["Content-Type"] = "application/json"
            wrk.headers["Request-Type"] = "async"
            wrk.headers["Authorization"] = "Bearer \(key)"

            """
        if let limitPerThread {
            script += """
                accepted = 0
                function response(status, headers, body)
                    if status < 300 then accepted = accepted + 1 end
                    if accepted >= \(limitPerThread) then wrk.thread:stop() end
                end

                """
        }
        return script
    }

    /// What one wrk run measured.
    struct WrkRun {
        var requests = 0
        var errors = 0
        var requestsPerSecond = 0.0
        var p50 = 0.0
        var p99 = 0.0

        func line(_ name: String) -> String {
            name.padding(toLength: 38, withPad: " ", startingAt: 0)
                + String(format: " %10.0f  %7.2f ms  %7.2f ms", requestsPerSecond, p50 * 1000, p99 * 1000)
        }
    }

    static func wrk(url: String, headers: [String: String] = [:], script: String? = nil, connections: Int, seconds: Int) throws -> WrkRun {
        var arguments = ["/usr/bin/wrk", "-t2", "-c\(connections)", "-d\(seconds)s", "--latency"]
        for (name, value) in headers { arguments += ["-H", "\(name): \(value)"] }
        if let script { arguments += ["-s", script] }
        let text = try BenchProcess.output(of: arguments + [url])
        var run = WrkRun()
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: \.isWhitespace)
            if line.contains("Requests/sec:"), let value = fields.last.flatMap({ Double($0) }) { run.requestsPerSecond = value }
            if line.contains("requests in"), let value = fields.first.flatMap({ Int($0) }) { run.requests = value }
            if line.contains("Non-2xx"), let value = fields.last.flatMap({ Int($0) }) { run.errors += value }
            if line.contains("Socket errors") {
                run.errors += fields.compactMap { Int($0.trimmingCharacters(in: CharacterSet(charactersIn: ","))) }.reduce(0, +)
            }
            if fields.count == 2, fields[0] == "50%" { run.p50 = duration(fields[1]) }
            if fields.count == 2, fields[0] == "99%" { run.p99 = duration(fields[1]) }
        }
        guard run.requestsPerSecond > 0 else { throw BenchmarkError("wrk measured nothing:\n\(text)") }
        return run
    }

    /// wrk's durations: `812.00us`, `1.23ms`, `2.00s`.
    static func duration(_ text: Substring) -> Double {
        for (unit, scale) in [("us", 1e-6), ("ms", 1e-3), ("m", 60.0), ("s", 1.0)] where text.hasSuffix(unit) {
            return (Double(text.dropLast(unit.count)) ?? 0) * scale
        }
        return 0
    }

    /// The resident memory of a process: in all, anonymous (its own heap) and file-backed (mapped files,
    /// LMDB's among them), from `/proc/<pid>/status`.
    static func memory(of pid: Int32?) -> String {
        guard let pid, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return "?" }
        var fields: [String: Int] = [:]
        for line in status.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0.isWhitespace })
            if parts.count >= 2, let kibibytes = Int(parts[1]) { fields[String(parts[0])] = kibibytes }
        }
        func mebibytes(_ name: String) -> String { String(format: "%.1f MiB", Double(fields[name] ?? 0) / 1024) }
        return "resident \(mebibytes("VmRSS")) (anonymous \(mebibytes("RssAnon")), files \(mebibytes("RssFile")))"
    }
}

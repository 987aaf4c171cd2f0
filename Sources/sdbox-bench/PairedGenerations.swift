import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDBoxCore

/// The same generations sent to a worker directly and through sdbox, one at a time and interleaved, so
/// that changes in the machine's load fall on every path alike; what sdbox adds is read from the paired
/// differences (each sdbox request against the direct one of its round), which such changes disturb less
/// than a difference of means.
struct PairedGenerations {
    /// Where a generation is sent.
    enum Path: String, CaseIterable {
        /// The worker's own `POST /sdapi/v1/txt2img`.
        case direct = "worker directly"
        /// The same call through Hummingbird and AsyncHTTPClient alone (``ForwardingProxy``): what the
        /// HTTP stack adds by standing between a client and its worker, before anything of sdbox's.
        case proxy = "bare stack, forwarding"
        /// sdbox's A1111 route, `POST /sdapi/v1/txt2img` (base64 images in the answer).
        case a1111 = "sdbox /sdapi/v1/txt2img"
        /// sdbox's task API, `POST /txt2img` synchronous (signed image URLs in the answer).
        case taskAPI = "sdbox /txt2img (sync)"
    }

    let http: HTTPClient
    let workerPort: Int
    let proxyPort: Int
    let sdboxPort: Int
    /// The generation's fields; each request adds its own `seed`.
    let fields: [String: JSONValue]
    /// A pause before each request: with generations of seconds, what sdbox does after an answer (storing
    /// images, thumbnails, commits) is over long before the next one; with a 24 ms test generation it is
    /// not, and it falls on whichever request comes next unless the requests are spaced.
    var gap: Duration = .zero

    /// Seconds each request took, per path, `rounds` rounds of one request per path (the order rotating
    /// between rounds), after one warm-up round.
    func measure(rounds: Int, paths: [Path] = Path.allCases) async throws -> [Path: [Double]] {
        for path in paths { try await send(path, seed: 0) }
        var times: [Path: [Double]] = [:]
        for round in 1...rounds {
            let rotated = Array(paths[(round % paths.count)...] + paths[..<(round % paths.count)])
            for path in rotated {
                if gap > .zero { try await Task.sleep(for: gap) }
                times[path, default: []].append(try await send(path, seed: round))
            }
        }
        return times
    }

    /// Sends one generation and returns the seconds until its whole answer was read.
    @discardableResult
    func send(_ path: Path, seed: Int) async throws -> Double {
        var body = fields
        body["seed"] = .integer(Int64(seed))
        let (port, route) = switch path {
        case .direct: (workerPort, "/sdapi/v1/txt2img")
        case .proxy: (proxyPort, "/sdapi/v1/txt2img")
        case .a1111: (sdboxPort, "/sdapi/v1/txt2img")
        case .taskAPI: (sdboxPort, "/txt2img")
        }
        let json = try JSONValue.object(body).encoded()
        let started = ContinuousClock.now
        _ = try await http.answer("http://127.0.0.1:\(port)\(route)", method: .POST, json: json)
        return started.duration(to: .now).seconds
    }

    /// Starts `worker` (a command with `{port}` and `{checkpoint}`) directly, a ``ForwardingProxy`` to it and an
    /// sdbox (`binary`) whose one pool runs the same command, then measures ``measure(rounds:paths:)`` on them
    /// with `fields`, `gap` before each request.
    static func run(
        http: HTTPClient, binary: String, worker: [String], checkpoint: String, fields: [String: JSONValue], rounds: Int,
        paths: [Path] = Path.allCases, gap: Duration = .zero, workspace: String
    ) async throws -> [Path: [Double]] {
        let data = workspace + "/sdbox"
        try FileManager.default.createDirectory(atPath: data + "/models/Stable-diffusion", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: data + "/models/Stable-diffusion/bench.safetensors", withDestinationPath: checkpoint)
        guard let workerPort = FreePort.allocate(), let proxyPort = FreePort.allocate(), let sdboxPort = FreePort.allocate() else {
            throw BenchmarkError("no free port")
        }
        let direct = BenchProcess(
            worker.map { $0.replacingOccurrences(of: "{port}", with: "\(workerPort)").replacingOccurrences(of: "{checkpoint}", with: checkpoint) },
            log: workspace + "/direct.log"
        )
        let proxy = BenchProcess(
            [CommandLine.arguments[0], "forwarding-proxy", "--port", "\(proxyPort)", "--upstream", "http://127.0.0.1:\(workerPort)"], log: workspace + "/proxy.log"
        )
        let command = (worker + ["--parent-pid", "{sdbox_pid}"]).map { "\"\($0)\"" }.joined(separator: ", ")
        let config = """
            scheduler: {maxInstances: 1, pool: {idleTimeoutSeconds: 3600}}
            workers:
              defaultProfile: bench
              profiles:
                bench: {command: [\(command)]}
            """
        try config.write(toFile: data + "/sdbox.yaml", atomically: true, encoding: .utf8)
        let server = BenchProcess(
            [binary, "serve", "--port", "\(sdboxPort)", "--data-dir", data, "--config", data + "/sdbox.yaml", "--log-level", "warning"],
            log: data + "/server.log"
        )
        let times: [Path: [Double]]
        do {
            try await http.waitUntilAnswering(port: sdboxPort, path: "/healthz", timeout: .seconds(300))
            try await http.waitUntilAnswering(port: workerPort, path: "/internal/ping", timeout: .seconds(300))
            try await http.waitUntilAnswering(port: proxyPort, path: "/healthz", timeout: .seconds(30), process: proxy)
            // The warm-up round also waits for sdbox's hash of the file and its worker.
            times = try await PairedGenerations(http: http, workerPort: workerPort, proxyPort: proxyPort, sdboxPort: sdboxPort, fields: fields, gap: gap)
                .measure(rounds: rounds, paths: paths)
        } catch {
            await server.stop()
            await proxy.stop()
            await direct.stop()
            throw error
        }
        await server.stop()
        await proxy.stop()
        await direct.stop()
        return times
    }

    /// A table of each path's times and, for sdbox's, what it adds over the direct request of each round.
    static func report(_ times: [Path: [Double]]) {
        let direct = times[.direct] ?? []
        print("path                         median      p90   | added: median      p90   ratio of medians")
        for path in Path.allCases {
            guard let own = times[path] else { continue }
            var line = path.rawValue.padding(toLength: 25, withPad: " ", startingAt: 0)
                + String(format: "  %7.2f ms %7.2f ms", own.median * 1000, own.percentile(0.9) * 1000)
            if path != .direct {
                let added = zip(own, direct).map { $0 - $1 }
                line += String(format: "   |     %+7.2f ms %+7.2f ms   %.3f", added.median * 1000, added.percentile(0.9) * 1000, own.median / max(direct.median, 1e-9))
            }
            print(line)
        }
        if let proxy = times[.proxy], let a1111 = times[.a1111] {
            let own = zip(a1111, proxy).map { $0 - $1 }
            print(String(format: "sdbox's own part of the A1111 route (its time less the bare stack's, paired): %+.2f ms median, %+.2f ms p90", own.median * 1000, own.percentile(0.9) * 1000))
        }
    }
}

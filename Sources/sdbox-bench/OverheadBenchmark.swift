import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import SDBoxCore

/// `sdbox-bench overhead`: what sdbox adds to one generation, against the same worker called directly,
/// on both sdbox routes (the A1111 one and the task API), with the reference worker and, when it is
/// installed, the sdcpp worker (real diffusion, stable-diffusion.cpp).
///
/// sdbox runs its own worker of the same kind and pace beside the one called directly; requests go one
/// at a time, interleaved (``PairedGenerations``).
struct OverheadBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overhead",
        abstract: "Latency sdbox adds per generation (A1111 route and task API) over calling the worker directly."
    )

    @Option(help: "Rounds (one request per path each).")
    var rounds = 200

    @Option(help: "Sampling steps per image.")
    var steps = 4

    @Option(help: "Image width and height.")
    var size = 64

    @Option(name: .customLong("step-ms"), help: "Reference worker milliseconds per step at 512x512 (its default).")
    var stepMilliseconds = 50

    @Option(help: "Rounds with the sdcpp worker, when installed (0 to skip).")
    var sdcppRounds = 20

    @Option(help: "The sdcpp worker's venv (default: $SDBOX_SDCPP_VENV, else ./sdbox-data/sdcpp-venv).")
    var venv: String?

    @Option(help: "The sdbox binary (default: beside this one).")
    var sdbox: String?

    func run() async throws {
        let binary = sdbox ?? SchedulingBenchmark.siblingBinary()
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw ValidationError("\(binary) not found; build it first") }
        let workspace = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        var configuration = HTTPClient.Configuration()
        configuration.timeout.read = .seconds(3600)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            print("sdbox-bench overhead: \(size)x\(size), \(steps) steps, one request at a time, \(ProcessInfo.processInfo.activeProcessorCount) cores")
            let checkpoint = workspace + "/reference.safetensors"
            try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: checkpoint))
            let reference = [binary, "worker", "--port", "{port}", "--checkpoint", "{checkpoint}", "--step-ms", "\(stepMilliseconds)"]
            print("\nreference worker (\(stepMilliseconds) ms/step at 512x512), \(rounds) rounds, load average \(LoadAverage.now()):")
            try await compare(http: http, binary: binary, worker: reference, checkpoint: checkpoint, rounds: rounds, workspace: workspace + "/reference")
            let venv = venv ?? ProcessInfo.processInfo.environment["SDBOX_SDCPP_VENV"] ?? "./sdbox-data/sdcpp-venv"
            if sdcppRounds > 0, FileManager.default.isExecutableFile(atPath: venv + "/bin/sdbox-sdcpp-worker") {
                let model = try SDCppBenchmark.writeTestCheckpoint(venv: venv, workspace: workspace)
                print("\nsdcpp worker (stable-diffusion.cpp, random-weight test checkpoint), \(sdcppRounds) rounds, load average \(LoadAverage.now()):")
                try await compare(
                    http: http, binary: binary, worker: [venv + "/bin/sdbox-sdcpp-worker", "--port", "{port}", "--ckpt", "{checkpoint}"],
                    checkpoint: model, rounds: sdcppRounds, workspace: workspace + "/sdcpp"
                )
            } else if sdcppRounds > 0 {
                print("\nsdcpp worker not installed at \(venv) (workers/sdcpp/install.sh \(venv)); skipped")
            }
            print("\nload average at the end: \(LoadAverage.now())")
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    /// Runs one worker directly and an sdbox whose pool runs the same command, and compares them.
    func compare(http: HTTPClient, binary: String, worker: [String], checkpoint: String, rounds: Int, workspace: String) async throws {
        let data = workspace + "/sdbox"
        try FileManager.default.createDirectory(atPath: data + "/models/Stable-diffusion", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: data + "/models/Stable-diffusion/bench.safetensors", withDestinationPath: checkpoint)
        guard let workerPort = FreePort.allocate(), let sdboxPort = FreePort.allocate() else { throw BenchmarkError("no free port") }
        let direct = BenchProcess(
            worker.map { $0.replacingOccurrences(of: "{port}", with: "\(workerPort)").replacingOccurrences(of: "{checkpoint}", with: checkpoint) },
            log: workspace + "/direct.log"
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
        let times: [PairedGenerations.Path: [Double]]
        do {
            try await http.waitUntilAnswering(port: sdboxPort, path: "/healthz", timeout: .seconds(300))
            try await http.waitUntilAnswering(port: workerPort, path: "/internal/ping", timeout: .seconds(300))
            let paired = PairedGenerations(
                http: http, workerPort: workerPort, sdboxPort: sdboxPort,
                fields: ["prompt": "a lighthouse at dusk", "steps": .integer(Int64(steps)), "width": .integer(Int64(size)), "height": .integer(Int64(size)), "cfg_scale": 1]
            )
            times = try await paired.measure(rounds: rounds)
        } catch {
            await server.stop()
            await direct.stop()
            throw error
        }
        await server.stop()
        await direct.stop()
        PairedGenerations.report(times)
    }
}

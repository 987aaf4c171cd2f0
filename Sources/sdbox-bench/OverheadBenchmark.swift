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

    @Option(
        name: .customLong("gap-ms"),
        help: "Milliseconds of pause before each request (0: back to back, so what sdbox does after an answer falls on the next request)."
    )
    var gapMilliseconds = 0

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
            print("sdbox-bench overhead: \(size)x\(size), \(steps) steps, one request at a time, \(gapMilliseconds) ms apart, \(ProcessInfo.processInfo.activeProcessorCount) cores")
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
        let fields: [String: JSONValue] = [
            "prompt": "a lighthouse at dusk", "steps": .integer(Int64(steps)), "width": .integer(Int64(size)), "height": .integer(Int64(size)), "cfg_scale": 1,
        ]
        PairedGenerations.report(
            try await PairedGenerations.run(
                http: http, binary: binary, worker: worker, checkpoint: checkpoint, fields: fields, rounds: rounds,
                gap: .milliseconds(gapMilliseconds), workspace: workspace
            )
        )
    }
}

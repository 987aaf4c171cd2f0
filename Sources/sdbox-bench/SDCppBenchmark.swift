import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDBoxCore

/// `sdbox-bench sdcpp`: the same small workload through the real engine (the sdcpp worker, i.e.
/// stable-diffusion.cpp) called directly and through sdbox, and the time a worker takes to load.
///
/// Two warm workers of the same checkpoint serve the two paths, and requests alternate between them (one
/// at a time, the same seeds on both), so that changes in the machine's load fall on both alike. The
/// overhead is what sdbox adds per image (the task in LMDB, the dispatch, the progress polling, storing
/// the PNGs and answering), as the median of the differences between each pair of requests, which other
/// load on the machine disturbs less than a difference of means.
struct SDCppBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sdcpp",
        abstract: "Real diffusion (the sdcpp worker): per-image and load time, and sdbox's overhead over calling the worker directly."
    )

    @Option(help: "The sdcpp worker's venv (default: $SDBOX_SDCPP_VENV, else ./sdbox-data/sdcpp-venv).")
    var venv: String?

    @Option(help: "Checkpoint to run (default: a random-weight test checkpoint written for the run).")
    var checkpoint: String?

    @Option(help: "Images per path (one per request).")
    var images = 20

    @Option(help: "Sampling steps per image.")
    var steps = 4

    @Option(help: "Image width and height.")
    var size = 64

    @Option(help: "CFG scale (1 skips the unconditional pass).")
    var cfgScale = 1.0

    @Option(help: "Engine threads of each worker (default: the worker's, all cores). On a busy machine 1 is much steadier.")
    var threads: Int?

    @Option(help: "The sdbox binary (default: beside this one).")
    var sdbox: String?

    func run() async throws {
        let binary = sdbox ?? SchedulingBenchmark.siblingBinary()
        let venv = venv ?? ProcessInfo.processInfo.environment["SDBOX_SDCPP_VENV"] ?? "./sdbox-data/sdcpp-venv"
        let worker = venv + "/bin/sdbox-sdcpp-worker"
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw ValidationError("\(binary) not found; build it first") }
        guard FileManager.default.isExecutableFile(atPath: worker) else {
            throw ValidationError("\(worker) not found; install it first: workers/sdcpp/install.sh \(venv)")
        }
        let workspace = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: workspace + "/models/Stable-diffusion", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        var configuration = HTTPClient.Configuration()
        configuration.timeout.read = .seconds(3600)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let model = try checkpoint.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? Self.writeTestCheckpoint(venv: venv, workspace: workspace)
            try await measure(http: http, binary: binary, worker: worker, model: model, workspace: workspace)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    static func writeTestCheckpoint(venv: String, workspace: String) throws -> String {
        let path = workspace + "/sdxs-noise.safetensors"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: venv + "/bin/sdbox-make-test-checkpoint")
        process.arguments = [path]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw BenchmarkError("sdbox-make-test-checkpoint failed") }
        return path
    }

    func measure(http: HTTPClient, binary: String, worker: String, model: String, workspace: String) async throws {
        let megabytes = ((try? FileManager.default.attributesOfItem(atPath: model)[.size] as? Int) ?? 0) >> 20
        print("sdbox-bench sdcpp: \(images) images per path, \(size)x\(size), \(steps) steps, cfg \(cfgScale), Euler a, \(threads.map { "\($0)" } ?? "all") engine threads")
        print("checkpoint: \((model as NSString).lastPathComponent) (\(megabytes) MiB)")

        // The worker alone: process start to ready, several times.
        var loads: [Double] = []
        for round in 0..<3 {
            guard let port = FreePort.allocate() else { throw BenchmarkError("no free port") }
            let started = ContinuousClock.now
            let process = BenchProcess([worker, "--port", "\(port)", "--ckpt", model] + threadArguments, log: "\(workspace)/load-\(round).log")
            try await http.waitUntilAnswering(port: port, path: "/internal/ping", timeout: .seconds(300))
            loads.append(started.duration(to: .now).seconds)
            await process.stop()
        }
        let engineLoad = Self.engineLoadSeconds(log: "\(workspace)/load-0.log")

        let times = try await PairedGenerations.run(
            http: http, binary: binary, worker: [worker, "--port", "{port}", "--ckpt", "{checkpoint}"] + threadArguments, checkpoint: model,
            fields: [
                "prompt": "a lighthouse at dusk", "steps": .integer(Int64(steps)), "width": .integer(Int64(size)),
                "height": .integer(Int64(size)), "cfg_scale": .number(cfgScale),
            ],
            rounds: images, paths: [.direct, .a1111], workspace: workspace
        )
        let directTimes = times[.direct] ?? []
        let sdboxTimes = times[.a1111] ?? []

        let differences = zip(sdboxTimes, directTimes).map { $0 - $1 }
        let directMedian = directTimes.median
        print(String(format: "worker start to ready:       %6.2f s median of 3 (engine load %.2f s; the rest is Python and imports)", loads.median, engineLoad ?? .nan))
        print(String(format: "per image, worker directly:  %6.3f s median, %6.3f s best", directMedian, directTimes.min() ?? 0))
        print(String(format: "per image, through sdbox:    %6.3f s median, %6.3f s best", sdboxTimes.median, sdboxTimes.min() ?? 0))
        print(String(
            format: "sdbox overhead:              %+6.0f ms median of the %d paired differences = %+.1f%% of the direct median; best vs best %+.1f%%",
            differences.median * 1000, images, differences.median / directMedian * 100,
            ((sdboxTimes.min() ?? 0) / (directTimes.min() ?? 1) - 1) * 100
        ))
    }

    var threadArguments: [String] { threads.map { ["--threads", "\($0)"] } ?? [] }

    /// The worker's own figure for loading the model ("Model loaded in 1.23s").
    static func engineLoadSeconds(log: String) -> Double? {
        guard let text = try? String(contentsOfFile: log, encoding: .utf8), let range = text.range(of: "Model loaded in ") else { return nil }
        return Double(text[range.upperBound...].prefix { $0.isNumber || $0 == "." })
    }
}

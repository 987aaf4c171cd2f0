import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDBoxCore

/// `sdbox-bench scheduling`: replays a mixed workload over several checkpoints through sdbox and, in the
/// same run, through the two alternatives a studio has without it, and prints makespan and latencies.
///
/// - **switching**: one worker that loads the checkpoint each request needs, in arrival order: what one
///   A1111 process does (here a worker restart per switch, which adds a process start to each load).
/// - **ideal**: one warm worker per checkpoint, each serving its own requests in arrival order.
/// - **sdbox**: the real server with its scheduler, after one warm-up request per checkpoint; once with
///   a cap that allows a worker per checkpoint, once with a smaller cap.
///
/// Workers are reference workers whose load time is `--load-ratio` times one generation.
struct SchedulingBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduling",
        abstract: "Mixed multi-model workload: sdbox against a model-switching worker and one warm worker per model."
    )

    @Option(help: "Tasks in the workload.")
    var tasks = 200

    @Option(help: "Checkpoints the tasks are spread over.")
    var models = 4

    @Option(help: "Sampling steps per task (512x512 images).")
    var steps = 8

    @Option(name: .customLong("step-ms"), help: "Reference worker milliseconds per step at 512x512.")
    var stepMilliseconds = 5

    @Option(help: "Checkpoint load time as a multiple of one generation.")
    var loadRatio = 30

    @Option(help: "The smaller instance cap for the second sdbox run (0 to skip).")
    var smallCap = 2

    @Option(help: "Seed of the workload's random interleaving.")
    var seed: UInt64 = 42

    @Option(help: "The sdbox binary (default: beside this one).")
    var sdbox: String?

    @Option(help: "'mixed' (the options above) or 'realistic': 8 checkpoints, GPU memory for 2 workers, a real worker's costs scaled by --scale, bursts of Zipf-popular models.")
    var profile = "mixed"

    @Option(help: "Realistic profile: the factor every cost is multiplied by (process start 30 s, load 5 s, reload 1 s, generation 3 s).")
    var scale = 0.05

    @Option(help: "Realistic profile: bursts of tasks, tasks per burst, and unscaled seconds between bursts.")
    var bursts = 8
    @Option(name: .customLong("per-burst"))
    var perBurst = 20
    @Option(name: .customLong("gap-seconds"))
    var gapSeconds = 40.0

    func run() async throws {
        let binary = sdbox ?? Self.siblingBinary()
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw ValidationError("\(binary) not found; build it first (swift build -c release)")
        }
        let workspace = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        if profile == "realistic" {
            try await runRealistic(binary: binary, workspace: workspace)
            return
        }
        guard profile == "mixed" else { throw ValidationError("--profile is 'mixed' or 'realistic'") }
        let generationMilliseconds = steps * stepMilliseconds
        let bench = Workbench(
            binary: binary, workspace: workspace, modelCount: models, steps: steps, stepMilliseconds: stepMilliseconds,
            loadMilliseconds: loadRatio * generationMilliseconds, workload: Self.workload(tasks: tasks, models: models, seed: seed)
        )
        try bench.prepare()
        do {
            try await runScenarios(bench)
        } catch {
            try? await bench.http.shutdown()
            throw error
        }
        try await bench.http.shutdown()
    }

    func runRealistic(binary: String, workspace: String) async throws {
        let arrivals = RealisticScheduling.arrivals(bursts: bursts, perBurst: perBurst, gapSeconds: gapSeconds, scale: scale, seed: seed)
        let bench = Workbench(
            binary: binary, workspace: workspace, modelCount: RealisticScheduling.models, steps: RealisticPace.steps, stepMilliseconds: 1,
            loadMilliseconds: 0, workload: arrivals.map(\.model)
        )
        try bench.prepare()
        let realistic = RealisticScheduling(bench: bench, pace: RealisticPace(scale: scale), fairnessSeconds: max(1, Int((60 * scale).rounded())), arrivals: arrivals)
        do {
            let runs = try await realistic.run()
            let leastPopular = (0..<RealisticScheduling.models).last { model in arrivals.contains { $0.model == model } } ?? 0
            ScheduledRun.printTable(runs, stopStart: runs[1], ideal: runs[3], leastPopular: leastPopular)
            let bound = Double(realistic.fairnessSeconds) + Double(realistic.pace.milliseconds(RealisticPace.startSeconds + RealisticPace.loadSeconds)) / 1000
            print(String(format: "\nbound on the least popular model's p95 wait: fairnessSeconds + one cold start = %.2f s", bound))
            print("load average: \((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?")")
        } catch {
            try? await bench.http.shutdown()
            throw error
        }
        try await bench.http.shutdown()
    }

    func runScenarios(_ bench: Workbench) async throws {
        let generationMilliseconds = steps * stepMilliseconds
        print("sdbox-bench scheduling: \(tasks) tasks over \(models) checkpoints (seed \(seed)), \(steps) steps at 512x512")
        print("reference workers: \(stepMilliseconds) ms/step, generation ~\(generationMilliseconds) ms, load ~\(loadRatio * generationMilliseconds) ms (\(loadRatio)x)")
        print("")
        var results: [Measurement] = []
        results.append(try await bench.switching())
        results.append(try await bench.ideal())
        results.append(try await bench.throughSDBox(cap: models))
        if smallCap > 0 && smallCap < models {
            results.append(try await bench.throughSDBox(cap: smallCap))
        }
        Measurement.printTable(results, baseline: results[0], ideal: results[1])
    }

    /// The sdbox binary in the same build folder as this benchmark.
    static func siblingBinary() -> String {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: me).deletingLastPathComponent().appendingPathComponent("sdbox").path
    }

    /// Which checkpoint each task uses: a seeded random interleaving.
    static func workload(tasks: Int, models: Int, seed: UInt64) -> [Int] {
        var generator = SplitMix64(seed: seed)
        return (0..<tasks).map { _ in Int(generator.next() % UInt64(models)) }
    }
}

/// The figures of one scenario.
struct Measurement {
    let name: String
    /// Seconds from the start of the run to each task's answer.
    let latencies: [Double]
    let makespan: Double
    var note = ""

    func percentile(_ p: Double) -> Double { latencies.percentile(p) }

    static func printTable(_ rows: [Measurement], baseline: Measurement, ideal: Measurement) {
        func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
        func seconds(_ value: Double) -> String { String(format: "%8.2f s", value) }
        print(pad("scenario", 30) + "  makespan      p50 lat     p95 lat   vs switching   of ideal")
        for row in rows {
            let speedup = baseline.makespan / row.makespan
            let ofIdeal = ideal.makespan / row.makespan
            print(
                pad(row.name, 30) + "  " + seconds(row.makespan) + "  " + seconds(row.percentile(0.5)) + "  "
                    + seconds(row.percentile(0.95)) + String(format: "   %8.2fx   %8.2fx", speedup, ofIdeal)
                    + (row.note.isEmpty ? "" : "   " + row.note)
            )
        }
    }
}

/// What the scenarios share: the binary, the checkpoints, the workload and an HTTP client.
struct Workbench {
    let binary: String
    let workspace: String
    let modelCount: Int
    let steps: Int
    let stepMilliseconds: Int
    let loadMilliseconds: Int
    let workload: [Int]
    let http: HTTPClient

    init(binary: String, workspace: String, modelCount: Int, steps: Int, stepMilliseconds: Int, loadMilliseconds: Int, workload: [Int]) {
        self.binary = binary
        self.workspace = workspace
        self.modelCount = modelCount
        self.steps = steps
        self.stepMilliseconds = stepMilliseconds
        self.loadMilliseconds = loadMilliseconds
        self.workload = workload
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = max(64, workload.count + modelCount)
        configuration.timeout.read = .seconds(3600)
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    var modelsFolder: String { workspace + "/models/Stable-diffusion" }
    func modelName(_ index: Int) -> String { "model-\(index).safetensors" }

    func prepare() throws {
        try FileManager.default.createDirectory(atPath: modelsFolder, withIntermediateDirectories: true)
        for index in 0..<modelCount {
            try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: modelsFolder + "/" + modelName(index)))
        }
    }

    func body(task index: Int, model: String?) -> Data {
        var body: [String: JSONValue] = [
            "prompt": .string("benchmark task \(index)"), "seed": .integer(Int64(index)), "steps": .integer(Int64(steps)),
            "width": 512, "height": 512,
        ]
        if let model { body["stable_diffusion_model"] = .string(model) }
        return (try? JSONValue.object(body).encoded()) ?? Data()
    }

    /// POSTs a JSON body and fails unless the answer is 200.
    func post(port: Int, path: String, body: Data) async throws {
        _ = try await http.answer("http://127.0.0.1:\(port)\(path)", method: .POST, json: body)
    }

    /// Starts a reference worker on `model`'s checkpoint, at the bench's pace unless told otherwise.
    func startWorker(model: Int, tag: String, stepMilliseconds: Int? = nil, loadMilliseconds: Int? = nil) async throws -> (BenchProcess, Int) {
        guard let port = FreePort.allocate() else { throw BenchmarkError("no free port") }
        let process = BenchProcess(
            [
                binary, "worker", "--port", "\(port)", "--checkpoint", modelsFolder + "/" + modelName(model),
                "--step-ms", "\(stepMilliseconds ?? self.stepMilliseconds)", "--min-step-ms", "1",
                "--load-ms", "\(loadMilliseconds ?? self.loadMilliseconds)", "--log-level", "warning",
            ],
            log: "\(workspace)/worker-\(tag).log"
        )
        try await http.waitUntilAnswering(port: port, path: "/internal/ping", timeout: .seconds(120))
        return (process, port)
    }

    // MARK: Scenarios

    /// One worker, switching checkpoint whenever the next request needs another, in arrival order. The
    /// first request's checkpoint is loaded before the clock starts.
    func switching() async throws -> Measurement {
        var (worker, port) = try await startWorker(model: workload[0], tag: "switching")
        var current = workload[0]
        var latencies: [Double] = []
        var switches = 0
        let start = ContinuousClock.now
        for (index, model) in workload.enumerated() {
            if model != current {
                await worker.stop()
                (worker, port) = try await startWorker(model: model, tag: "switching")
                current = model
                switches += 1
            }
            try await post(port: port, path: "/sdapi/v1/txt2img", body: body(task: index, model: nil))
            latencies.append(start.duration(to: .now).seconds)
        }
        await worker.stop()
        return Measurement(name: "switching (one A1111-like)", latencies: latencies, makespan: latencies.last ?? 0, note: "\(switches) switches")
    }

    /// One warm worker per checkpoint, each taking its own requests in arrival order.
    func ideal() async throws -> Measurement {
        var workers: [(BenchProcess, Int)] = []
        for model in 0..<modelCount { workers.append(try await startWorker(model: model, tag: "ideal-\(model)")) }
        let start = ContinuousClock.now
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for model in 0..<modelCount {
                let port = workers[model].1
                let mine = workload.enumerated().filter { $0.element == model }.map(\.offset)
                group.addTask {
                    var done: [Double] = []
                    for index in mine {
                        try await post(port: port, path: "/sdapi/v1/txt2img", body: body(task: index, model: nil))
                        done.append(start.duration(to: .now).seconds)
                    }
                    return done
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        for (worker, _) in workers { await worker.stop() }
        return Measurement(name: "ideal (warm worker per model)", latencies: latencies, makespan: latencies.max() ?? 0)
    }

    /// Starts `sdbox serve` with `config`, its own data folder (`tag`) and the bench's checkpoints.
    func startServer(tag: String, config: String) async throws -> (process: BenchProcess, port: Int) {
        guard let port = FreePort.allocate() else { throw BenchmarkError("no free port") }
        let data = "\(workspace)/sdbox-\(tag)"
        try FileManager.default.createDirectory(atPath: data + "/models", withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: data + "/models/Stable-diffusion")
        try FileManager.default.createSymbolicLink(atPath: data + "/models/Stable-diffusion", withDestinationPath: modelsFolder)
        try config.write(toFile: data + "/sdbox.yaml", atomically: true, encoding: .utf8)
        let server = BenchProcess(
            [binary, "serve", "--port", "\(port)", "--data-dir", data, "--config", data + "/sdbox.yaml", "--log-level", "warning"],
            log: data + "/server.log"
        )
        try await http.waitUntilAnswering(port: port, path: "/healthz", timeout: .seconds(120))
        return (server, port)
    }

    /// The real sdbox: every task sent at once as a sync `/txt2img`, after a warm-up request per checkpoint.
    func throughSDBox(cap: Int) async throws -> Measurement {
        let config = """
            scheduler:
              maxInstances: \(cap)
              pool: {maxInstances: 1, idleTimeoutSeconds: 3600}
            workers:
              reference: {stepMilliseconds: \(stepMilliseconds), minimumStepMilliseconds: 1, loadMilliseconds: \(loadMilliseconds)}
            """
        let (server, port) = try await startServer(tag: "cap\(cap)", config: config)
        let warmStart = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for model in 0..<modelCount {
                group.addTask { try await post(port: port, path: "/txt2img", body: body(task: -1 - model, model: modelName(model))) }
            }
            try await group.waitForAll()
        }
        let warmUp = warmStart.duration(to: .now).seconds
        let start = ContinuousClock.now
        let latencies = try await withThrowingTaskGroup(of: Double.self) { group in
            for (index, model) in workload.enumerated() {
                group.addTask {
                    try await post(port: port, path: "/txt2img", body: body(task: index, model: modelName(model)))
                    return start.duration(to: .now).seconds
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        await server.stop()
        return Measurement(
            name: "sdbox, cap \(cap)", latencies: latencies, makespan: latencies.max() ?? 0,
            note: String(format: "warm-up %.2f s", warmUp)
        )
    }
}

/// A benchmark that could not run.
struct BenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

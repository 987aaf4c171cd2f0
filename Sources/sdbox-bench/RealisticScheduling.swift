import AsyncHTTPClient
import Foundation
import SDBoxCore
import Synchronization

/// `sdbox-bench scheduling --profile realistic`: more checkpoints than GPU memory, with a real worker's
/// costs. Eight checkpoints, GPU memory for two workers, process start 30 s, checkpoint load 5 s, reload
/// from RAM 1 s, generation 3 s, all scaled down (``RealisticPace``) so that a run takes minutes; tasks arrive in
/// bursts, each task's model drawn with Zipf-like popularity (the k-th model weighs 1/k).
///
/// Four ways to serve it, in one run:
/// - **switching**: one A1111-like worker serving tasks in arrival order, loading the checkpoint each
///   task needs (a load per switch, no process start);
/// - **stop and start**: sdbox with parking off (`hostMemoryMiB: 0`): an idle worker whose GPU memory is
///   needed stops, and its model's next task cold-starts a process;
/// - **tiers**: sdbox as shipped: an idle worker is parked in RAM and comes back with a reload;
/// - **ideal**: two workers that hold every checkpoint warm, serving tasks in arrival order.
///
/// Each task's wait is its time from arrival to answer less one generation. Both sdbox runs are warmed up
/// first with one task per model in turn (every model has been loaded once, as in the ideal); the
/// switching worker starts with the first task's checkpoint loaded.
struct RealisticScheduling {
    let bench: Workbench
    let pace: RealisticPace
    let fairnessSeconds: Int
    let arrivals: [(at: Double, model: Int)]

    static let models = 8

    /// `bursts` bursts of `perBurst` tasks, `gapSeconds` (unscaled) apart; models drawn by Zipf weights.
    static func arrivals(bursts: Int, perBurst: Int, gapSeconds: Double, scale: Double, seed: UInt64) -> [(at: Double, model: Int)] {
        var generator = SplitMix64(seed: seed)
        let weights = (1...models).map { 1.0 / Double($0) }
        let total = weights.reduce(0, +)
        func draw() -> Int {
            var x = Double(generator.next() % 1_000_000) / 1_000_000 * total
            for (index, weight) in weights.enumerated() {
                x -= weight
                if x < 0 { return index }
            }
            return models - 1
        }
        return (0..<bursts).flatMap { burst in (0..<perBurst).map { _ in (at: Double(burst) * gapSeconds * scale, model: draw()) } }
    }

    func run() async throws -> [ScheduledRun] {
        print("realistic profile, \(pace.summary);")
        print("\(arrivals.count) tasks over \(Self.models) checkpoints")
        let counts = (0..<Self.models).map { model in arrivals.filter { $0.model == model }.count }
        print("tasks per model (Zipf): \(counts.map(String.init).joined(separator: " ")); fairnessSeconds \(fairnessSeconds) (scaled)")
        print("")
        return [
            try await switching(),
            try await throughSDBox(name: "sdbox, stop and start (parking off)", parking: false),
            try await throughSDBox(name: "sdbox, tiers (parking on)", parking: true),
            try await ideal(),
        ]
    }

    // MARK: Scenarios

    func worker(model: Int, tag: String) async throws -> (BenchProcess, Int) {
        try await bench.startWorker(model: model, tag: tag, stepMilliseconds: pace.stepMilliseconds, loadMilliseconds: pace.milliseconds(RealisticPace.loadSeconds))
    }

    func body(_ index: Int, model: Int?) -> Data {
        pace.body(index, model: model.map(bench.modelName))
    }

    /// Sleeps until `seconds` after `start`.
    func wait(until seconds: Double, from start: ContinuousClock.Instant) async throws {
        let due = start + .milliseconds(Int(seconds * 1000))
        if due > .now { try await Task.sleep(until: due) }
    }

    func switching() async throws -> ScheduledRun {
        var (process, port) = try await worker(model: arrivals[0].model, tag: "switching")
        var current = arrivals[0].model
        var waits: [(model: Int, seconds: Double)] = []
        var switches = 0
        let start = ContinuousClock.now
        for (index, task) in arrivals.enumerated() {
            try await wait(until: task.at, from: start)
            if task.model != current {
                await process.stop()
                (process, port) = try await worker(model: task.model, tag: "switching")
                current = task.model
                switches += 1
            }
            try await bench.post(port: port, path: "/sdapi/v1/txt2img", body: body(index, model: nil))
            waits.append((task.model, start.duration(to: .now).seconds - task.at - Double(pace.generationMilliseconds) / 1000))
        }
        let makespan = start.duration(to: .now).seconds
        await process.stop()
        return ScheduledRun(name: "one switching worker", makespan: makespan, waits: waits, note: "\(switches) switches")
    }

    func ideal() async throws -> ScheduledRun {
        let workers = [try await worker(model: 0, tag: "ideal-0"), try await worker(model: 1, tag: "ideal-1")]
        let tickets = Tickets()
        let start = ContinuousClock.now
        let waits = try await withThrowingTaskGroup(of: [(model: Int, seconds: Double)].self) { group in
            for (_, port) in workers {
                group.addTask {
                    var mine: [(model: Int, seconds: Double)] = []
                    while true {
                        let index = tickets.next.add(1, ordering: .relaxed).oldValue
                        guard index < arrivals.count else { return mine }
                        let task = arrivals[index]
                        try await wait(until: task.at, from: start)
                        try await bench.post(port: port, path: "/sdapi/v1/txt2img", body: body(index, model: nil))
                        mine.append((task.model, start.duration(to: .now).seconds - task.at - Double(pace.generationMilliseconds) / 1000))
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        let makespan = start.duration(to: .now).seconds
        for (process, _) in workers { await process.stop() }
        return ScheduledRun(name: "ideal (two workers, all warm)", makespan: makespan, waits: waits, note: "no switch costs")
    }

    func throughSDBox(name: String, parking: Bool) async throws -> ScheduledRun {
        let config = """
            scheduler:
              maxInstances: 2
              fairnessSeconds: \(fairnessSeconds)
              hostMemoryMiB: \(parking ? Self.models * 8000 : 0)
              gpus: [{index: 0, memoryMiB: 16000}]
              pool: {maxInstances: 1, idleTimeoutSeconds: 3600, gpuMemoryMiB: 8000, hostMemoryMiB: 8000}
            \(pace.workersSection)
            """
        let server = try await bench.startServer(tag: parking ? "tiers" : "stop-start", config: config)
        // As the ideal starts with every model warm: one task per model first, in turn, before the clock.
        let warmStart = ContinuousClock.now
        for model in 0..<Self.models {
            try await bench.post(port: server.port, path: "/txt2img", body: body(-1 - model, model: model))
        }
        let warmUp = warmStart.duration(to: .now).seconds
        let start = ContinuousClock.now
        let waits = try await withThrowingTaskGroup(of: (model: Int, seconds: Double).self) { group in
            for (index, task) in arrivals.enumerated() {
                group.addTask {
                    try await wait(until: task.at, from: start)
                    try await bench.post(port: server.port, path: "/txt2img", body: body(index, model: task.model))
                    return (task.model, start.duration(to: .now).seconds - task.at - Double(pace.generationMilliseconds) / 1000)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let makespan = start.duration(to: .now).seconds
        let workers = try JSONValue(parsing: try await bench.http.answer("http://127.0.0.1:\(server.port)/workers"))
        await server.process.stop()
        let starts = (workers["coldStarts"]?.objectValue ?? [:]).values.compactMap(\.integerValue).reduce(0, +)
        let served = workers["workers"]?.arrayValue ?? []
        let parks = served.compactMap { $0["parks"]?.integerValue }.reduce(0, +)
        let reloads = served.compactMap { $0["reloads"]?.integerValue }.reduce(0, +)
        return ScheduledRun(
            name: name, makespan: makespan, waits: waits,
            note: String(format: "warm-up %.1f s; %d cold starts; live workers: %d parks, %d reloads", warmUp, starts, parks, reloads)
        )
    }
}

/// Hands out task indexes in arrival order to the workers that take them.
final class Tickets: Sendable {
    let next = Atomic(0)
}

/// The figures of one way to serve the realistic workload.
struct ScheduledRun {
    let name: String
    let makespan: Double
    /// Each task's model and wait in seconds.
    let waits: [(model: Int, seconds: Double)]
    var note = ""

    func p95Wait(model: Int? = nil) -> Double {
        waits.filter { model == nil || $0.model == model }.map { max(0, $0.seconds) }.percentile(0.95)
    }

    static func printTable(_ runs: [ScheduledRun], stopStart: ScheduledRun, ideal: ScheduledRun, leastPopular: Int) {
        func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
        print(pad("scenario", 38) + "  makespan   p95 wait   p95 wait (model \(leastPopular))   vs stop-start   of ideal")
        for run in runs {
            print(
                pad(run.name, 38) + String(format: "  %7.2f s  %7.2f s  %20.2f s  %12.2fx  %8.2fx", run.makespan, run.p95Wait(), run.p95Wait(model: leastPopular), stopStart.makespan / run.makespan, ideal.makespan / run.makespan)
                    + "   " + run.note
            )
        }
    }
}

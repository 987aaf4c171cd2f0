import ArgumentParser
import AsyncHTTPClient
import Foundation

/// `sdbox-bench fleet` (issue 18): the same mixed workload on fleets of 1, 2 and 3 boxes (each a real
/// `sdbox serve` with `--max-instances 2` and reference workers at a real worker's pace, scaled down), on
/// one PostgreSQL and one shared folder: makespan, waits, throughput and the speedup over one box. Then
/// status reads of a PostgreSQL-backed box against an LMDB one in the same run.
///
/// Every box runs on this machine, so a larger fleet shares the same cores: the figures say what the
/// fleet's claiming costs and allows, not what three real GPU boxes would gain.
struct FleetBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "A mixed workload on 1..N boxes sharing PostgreSQL and a folder; status reads on PostgreSQL against LMDB."
    )

    @Option(help: "Tasks in the workload, all submitted at once.")
    var tasks = 480

    @Option(help: "Checkpoints the tasks are spread over.")
    var models = 4

    @Option(help: "The largest fleet: the workload runs on 1, 2, ... this many boxes.")
    var boxes = 3

    @Option(help: "Workers on a GPU at once per box (scheduler.maxInstances).")
    var maxInstances = 2

    @Option(help: "The factor a real worker's costs are multiplied by (process start 30 s, load 5 s, reload 1 s, generation 3 s).")
    var scale = 0.05

    @Option(help: "Seed of the workload's random mix of checkpoints.")
    var seed: UInt64 = 42

    @Option(help: "Seconds of each wrk run of the status reads (0 to skip them).")
    var seconds = 10

    @Option(help: "Connections of wrk for the status reads.")
    var connections = 256

    @Option(help: "Alternating rounds of status reads (PostgreSQL, then LMDB).")
    var rounds = 2

    @Option(help: "The sdbox binary (default: beside this one).")
    var sdbox: String?

    @Flag(help: "Keep the working folder (boxes' data and logs, PostgreSQL's log) and print where it is.")
    var keepFolder = false

    func run() async throws {
        let binary = sdbox ?? SchedulingBenchmark.siblingBinary()
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw ValidationError("\(binary) not found; build it first") }
        guard seconds == 0 || FileManager.default.isExecutableFile(atPath: "/usr/bin/wrk") else { throw ValidationError("wrk is needed: apt install wrk") }
        let workspace = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-bench-\(UUID().uuidString)").path
        let pace = RealisticPace(scale: scale)
        let bench = Workbench(
            binary: binary, workspace: workspace + "/shared", modelCount: models, steps: RealisticPace.steps, stepMilliseconds: pace.stepMilliseconds,
            loadMilliseconds: pace.milliseconds(RealisticPace.loadSeconds), workload: SchedulingBenchmark.workload(tasks: tasks, models: models, seed: seed)
        )
        var postgres: BenchPostgres?
        do {
            try bench.prepare()
            postgres = try await BenchPostgres.start(in: workspace + "/postgres")
            try await measure(bench: bench, pace: pace, postgres: postgres!, workspace: workspace)
        } catch {
            await finish(bench: bench, postgres: postgres, workspace: workspace)
            throw error
        }
        await finish(bench: bench, postgres: postgres, workspace: workspace)
    }

    func finish(bench: Workbench, postgres: BenchPostgres?, workspace: String) async {
        try? await bench.http.shutdown()
        await postgres?.process.stop()
        if keepFolder {
            print("\nworking folder kept: \(workspace)")
        } else {
            try? FileManager.default.removeItem(atPath: workspace)
        }
    }

    func measure(bench: Workbench, pace: RealisticPace, postgres: BenchPostgres, workspace: String) async throws {
        // GPU memory for `maxInstances` workers of 8000 MiB, and RAM to park every model's worker. A pool's
        // maxInstances counts the workers of every box: it is set to the fleet's slots, so that only the
        // boxes' slots bound the workers, for every fleet size alike.
        let settings = """
            scheduler:
              maxInstances: \(maxInstances)
              fairnessSeconds: \(max(1, Int((60 * scale).rounded())))
              hostMemoryMiB: \(models * 8000)
              gpus: [{index: 0, memoryMiB: \(maxInstances * 8000)}]
              pool: {maxInstances: \(maxInstances * boxes), idleTimeoutSeconds: 3600, gpuMemoryMiB: 8000, hostMemoryMiB: 8000}
            limits: {maxQueuedPerUser: 1000000, maxQueuedBytesPerUser: 1099511627776}
            \(pace.workersSection)

            """
        let perModel = (0..<models).map { model in bench.workload.filter { $0 == model }.count }
        print("sdbox-bench fleet: \(tasks) tasks over \(models) checkpoints (\(perModel.map(String.init).joined(separator: " ")); seed \(seed)), \(RealisticPace.steps) steps at \(RealisticPace.side)x\(RealisticPace.side)")
        print("all submitted at once, async, round robin to the boxes by the client (no load balancer: a box claims any box's tasks when it has room)")
        print("each box: maxInstances \(maxInstances) (GPU memory for \(maxInstances) workers), parking on, its own data folder; pools' maxInstances \(maxInstances * boxes) over the fleet")
        print("reference workers, \(pace.summary) (a real A1111: start 30-70 s, load ~5 s, generation ~3 s)")
        print("every box on this machine: \(ProcessInfo.processInfo.activeProcessorCount) cores shared by all boxes, their workers and PostgreSQL; load average \(LoadAverage.now())")
        print("wait: from a task's submission to its start on a worker (the record's startedAt); run: startedAt to finishedAt; makespan: first submission to the last finishedAt\n")
        let workload = FleetWorkload(bench: bench, pace: pace)
        var rows: [FleetFigures] = []
        for size in 1...boxes {
            let fleet = try await Fleet.start(
                count: size, tag: "fleet\(size)", binary: bench.binary, workspace: workspace,
                shared: bench.workspace, databaseURL: try postgres.makeDatabase("fleet\(size)"), settings: settings, http: bench.http
            )
            do {
                rows.append(try await workload.run(on: fleet))
            } catch {
                await fleet.stop()
                throw error
            }
            await fleet.stop()
            print(String(format: "%d box(es): makespan %.2f s", size, rows[rows.count - 1].makespan) + ", load average \(LoadAverage.now())")
        }
        print("")
        FleetFigures.printTable(rows)
        if seconds > 0 {
            try await StoreStatusReads(bench: bench, pace: pace, postgres: postgres, workspace: workspace, settings: settings, seconds: seconds, connections: connections, rounds: rounds).run()
        }
        let errors = postgres.loggedErrors()
        print("\nPostgreSQL logged \(errors.map(\.count).reduce(0, +)) errors" + (errors.isEmpty ? "" : ":"))
        for error in errors.prefix(10) { print(String(format: "%6d  ", error.count) + error.line) }
        print("\nload average at the end: \(LoadAverage.now())")
    }
}

import Foundation
import NIOHTTP1
import SDBoxCore

/// Status reads of a box whose store is PostgreSQL against one on LMDB, in one run: wrk on
/// `GET /tasks/{id}/progress` of a finished task of each box, in alternating rounds, as `control-plane`
/// measures them against nginx (here without API keys: `sdbox keys` writes LMDB only).
struct StoreStatusReads {
    let bench: Workbench
    let pace: RealisticPace
    let postgres: BenchPostgres
    /// The folder the boxes' data folders are made in.
    let workspace: String
    /// The YAML of the boxes' scheduler, workers and limits.
    let settings: String
    let seconds: Int
    let connections: Int
    let rounds: Int

    func run() async throws {
        func box(_ tag: String, databaseURL: String?) async throws -> Fleet {
            try await Fleet.start(
                count: 1, tag: tag, binary: bench.binary, workspace: workspace, shared: bench.workspace, databaseURL: databaseURL, settings: settings, http: bench.http
            )
        }
        let onPostgres = try await box("status-postgres", databaseURL: try postgres.makeDatabase("status"))
        let onLMDB: Fleet
        do { onLMDB = try await box("status-lmdb", databaseURL: nil) } catch {
            await onPostgres.stop()
            throw error
        }
        do {
            var urls: [String] = []
            for fleet in [onPostgres, onLMDB] {
                let url = fleet.boxes[0].url
                let answer = try await bench.http.answer(url + "/txt2img", method: .POST, json: pace.body(0, model: bench.modelName(0)))
                guard let id = try JSONValue(parsing: answer)["taskId"]?.stringValue else { throw BenchmarkError("no taskId in a submission's answer") }
                urls.append(url + "/tasks/\(id)/progress")
            }
            print("\nstatus reads: GET /tasks/{id}/progress of a finished task, wrk -t2 -c\(connections), \(seconds) s a run, alternating:")
            print("box                                    requests/s     p50        p99      PostgreSQL / LMDB")
            for round in 1...rounds {
                let postgresRun = try ControlPlaneBenchmark.wrk(url: urls[0], connections: connections, seconds: seconds)
                let lmdbRun = try ControlPlaneBenchmark.wrk(url: urls[1], connections: connections, seconds: seconds)
                func errors(_ run: ControlPlaneBenchmark.WrkRun) -> String { run.errors > 0 ? "   \(run.errors) errors" : "" }
                print(postgresRun.line("PostgreSQL-backed box #\(round)") + String(format: "   %.2fx", postgresRun.requestsPerSecond / lmdbRun.requestsPerSecond) + errors(postgresRun))
                print(lmdbRun.line("LMDB box #\(round)") + "   (load \(LoadAverage.now()))" + errors(lmdbRun))
            }
        } catch {
            await onPostgres.stop()
            await onLMDB.stop()
            throw error
        }
        await onPostgres.stop()
        await onLMDB.stop()
    }
}

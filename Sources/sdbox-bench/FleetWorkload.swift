import AsyncHTTPClient
import Foundation
import NIOHTTP1
import SDBoxCore

/// The mixed workload of `sdbox-bench fleet` on one fleet: every task submitted at once (at most
/// ``submissionsInFlight`` requests open) as an async
/// `POST /txt2img`, round robin over the boxes (no load balancer: any box's tasks are claimed by whichever
/// box has room), then read back from the task records once all have ended.
struct FleetWorkload {
    let bench: Workbench
    let pace: RealisticPace

    /// Submissions in flight at once: within a box's connections per client address
    /// (`connections.maxConnectionsPerAddress`, 512), which a burst of 1,000 would pass.
    static let submissionsInFlight = 256

    /// Runs the workload on `fleet` and returns its figures.
    func run(on fleet: Fleet) async throws -> FleetFigures {
        let boxes = fleet.boxes
        let sent = try await withThrowingTaskGroup(of: (id: String, at: Double).self) { group in
            var sent: [String: Double] = [:]
            for (index, model) in bench.workload.enumerated() {
                if index >= Self.submissionsInFlight, let done = try await group.next() { sent[done.id] = done.at }
                group.addTask {
                    let at = Date().timeIntervalSince1970
                    let answer = try await bench.http.answer(
                        boxes[index % boxes.count].url + "/txt2img", method: .POST, headers: ["Request-Type": "async"],
                        json: pace.body(index, model: bench.modelName(model))
                    )
                    guard let id = try JSONValue(parsing: answer)["taskId"]?.stringValue else { throw BenchmarkError("no taskId in a submission's answer") }
                    return (id, at)
                }
            }
            return try await group.reduce(into: sent) { $0[$1.id] = $1.at }
        }
        let start = sent.values.min() ?? 0
        while try await !unfinished(on: boxes[0]) {
            try await Task.sleep(for: .milliseconds(250))
        }
        let records = try await allTasks(on: boxes[0]).filter { sent[$0.id] != nil }
        let finished = try await fleet.tasksFinished(http: bench.http)
        let problems = [
            records.count < sent.count ? "\(sent.count - records.count) tasks missing" : nil,
            records.contains { $0.status != "succeeded" } ? "\(records.filter { $0.status != "succeeded" }.count) tasks did not succeed" : nil,
            records.contains { $0.attempts != 1 } ? "\(records.filter { $0.attempts != 1 }.count) tasks with attempts != 1" : nil,
            finished.reduce(0, +) != sent.count ? "the boxes finished \(finished.reduce(0, +)) tasks for \(sent.count) submitted" : nil,
        ].compactMap { $0 }
        return FleetFigures(
            boxes: boxes.count, tasks: records.count,
            makespan: (records.compactMap(\.finishedAt).max() ?? start) - start,
            waits: records.compactMap { record in record.startedAt.map { $0 - (sent[record.id] ?? start) } },
            runs: records.compactMap { record in record.startedAt.flatMap { started in record.finishedAt.map { $0 - started } } },
            finishedPerBox: finished, coldStartsPerBox: try await fleet.coldStarts(http: bench.http),
            load: LoadAverage.now(), problems: problems, logged: fleet.logged()
        )
    }

    /// Whether no task is waiting or running, as `box` lists them.
    func unfinished(on box: Fleet.Box) async throws -> Bool {
        let page = try JSONValue(parsing: try await bench.http.answer(box.url + "/tasks?state=waiting,running&limit=1"))
        return page["tasks"]?.arrayValue?.isEmpty ?? false
    }

    /// Every task `box` lists, page by page.
    func allTasks(on box: Fleet.Box) async throws -> [TaskTimes] {
        var tasks: [TaskTimes] = []
        var next: String? = ""
        while let before = next {
            let query = before.isEmpty ? "" : "&before=" + (before.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? before)
            let page = try JSONValue(parsing: try await bench.http.answer(box.url + "/tasks?limit=500" + query))
            tasks += (page["tasks"]?.arrayValue ?? []).compactMap(TaskTimes.init)
            next = page["next"]?.stringValue
        }
        return tasks
    }
}

/// What the task listing says of one task: its id, status, attempts, and when it started and ended
/// (seconds since 1970).
struct TaskTimes {
    let id: String
    let status: String
    let attempts: Int
    let startedAt: Double?
    let finishedAt: Double?

    init?(_ summary: JSONValue) {
        guard let id = summary["taskId"]?.stringValue, let status = summary["status"]?.stringValue else { return nil }
        self.id = id
        self.status = status
        attempts = summary["attempts"]?.integerValue.map(Int.init) ?? 0
        startedAt = summary["startedAt"]?.doubleValue
        finishedAt = summary["finishedAt"]?.doubleValue
    }
}

/// The figures of the workload on one fleet size.
struct FleetFigures {
    let boxes: Int
    let tasks: Int
    let makespan: Double
    /// Each task's wait: from its submission to its start on a worker, in seconds.
    let waits: [Double]
    /// Each task's time on its worker (start to end), in seconds.
    let runs: [Double]
    let finishedPerBox: [Int]
    let coldStartsPerBox: [Int]
    /// The load average when the last task had ended.
    let load: String
    /// Tasks missing, failed, run more than once or counted twice.
    let problems: [String]
    /// What the boxes logged at warning level and above.
    let logged: [String]

    static func printTable(_ rows: [FleetFigures]) {
        guard let one = rows.first(where: { $0.boxes == 1 }) ?? rows.first else { return }
        func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
        print("boxes  tasks   makespan   tasks/s   p50 wait   p95 wait   p50 run   vs 1 box  load   tasks per box    cold starts per box")
        for row in rows {
            let figures = String(
                format: "%5d  %5d  %7.2f s  %8.2f  %7.2f s  %7.2f s  %6.3f s  %7.2fx  ", row.boxes, row.tasks, row.makespan, Double(row.tasks) / row.makespan,
                row.waits.median, row.waits.percentile(0.95), row.runs.median, one.makespan / row.makespan
            )
            print(figures + pad(row.load, 7) + pad(row.finishedPerBox.map(String.init).joined(separator: " "), 17) + row.coldStartsPerBox.map(String.init).joined(separator: " "))
        }
        for row in rows {
            let verdict = row.problems.isEmpty ? "every task succeeded, once" : row.problems.joined(separator: "; ")
            print("\n\(row.boxes) box(es): \(verdict); \(row.logged.count) lines logged at warning and above" + (row.logged.isEmpty ? "" : " (the first 10):"))
            for line in row.logged.prefix(10) { print("  " + line) }
        }
    }
}

import AsyncHTTPClient
import Foundation
import SDBoxCore

/// The boxes of one fleet, as issue 18 deploys them: `sdbox serve` processes, each with its own data
/// folder, configuration and `node.name`, all on one PostgreSQL database and one shared folder (objects
/// and models). Without a database URL it is one box on LMDB.
struct Fleet {
    /// One box: its name, process and port.
    struct Box {
        let name: String
        let process: BenchProcess
        let port: Int
        var url: String { "http://127.0.0.1:\(port)" }
    }

    let boxes: [Box]

    /// Starts `count` boxes named `<tag>-box1`... with `settings` (the YAML of the scheduler, workers and
    /// limits), and waits until each is ready.
    static func start(
        count: Int, tag: String, binary: String, workspace: String, shared: String, databaseURL: String?, settings: String, http: HTTPClient
    ) async throws -> Fleet {
        var boxes: [Box] = []
        do {
            for index in 1...count {
                let name = "\(tag)-box\(index)"
                guard let port = FreePort.allocate() else { throw BenchmarkError("no free port") }
                let data = "\(workspace)/\(name)"
                try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
                var config = "sharedDir: \(shared)\nnode: {name: \(name)}\n"
                if let databaseURL { config += "database: {url: \"\(databaseURL)\"}\n" }
                try (config + settings).write(toFile: data + "/sdbox.yaml", atomically: true, encoding: .utf8)
                let process = BenchProcess(
                    [binary, "serve", "--port", "\(port)", "--data-dir", data, "--config", data + "/sdbox.yaml", "--log-level", "warning"],
                    log: data + "/server.log"
                )
                boxes.append(Box(name: name, process: process, port: port))
                try await http.waitUntilAnswering(port: port, path: "/readyz", timeout: .seconds(120), process: process)
            }
        } catch {
            await Fleet(boxes: boxes).stop()
            throw error
        }
        return Fleet(boxes: boxes)
    }

    func stop() async {
        for box in boxes { await box.process.stop() }
    }

    /// What the boxes logged (at warning level and above), each line led by its box's name.
    func logged() -> [String] {
        boxes.flatMap { box in
            ((try? String(contentsOfFile: box.process.log, encoding: .utf8)) ?? "").split(separator: "\n").map { "\(box.name): \($0)" }
        }
    }

    /// The tasks each box finished (`sdbox_tasks_total` of its `/metrics`, every model and state).
    func tasksFinished(http: HTTPClient) async throws -> [Int] {
        var counts: [Int] = []
        for box in boxes {
            let text = String(decoding: try await http.answer(box.url + "/metrics"), as: UTF8.self)
            let values = text.split(separator: "\n").filter { $0.hasPrefix("sdbox_tasks_total{") }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
            counts.append(Int(values.reduce(0, +).rounded()))
        }
        return counts
    }

    /// The worker processes each box started (`coldStarts` of its `/workers`).
    func coldStarts(http: HTTPClient) async throws -> [Int] {
        var counts: [Int] = []
        for box in boxes {
            let workers = try JSONValue(parsing: try await http.answer(box.url + "/workers"))
            counts.append((workers["coldStarts"]?.objectValue ?? [:]).values.compactMap(\.integerValue).map(Int.init).reduce(0, +))
        }
        return counts
    }
}

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Subprocess
import Synchronization
import SystemPackage

/// A child process of a benchmark (an sdbox server or worker), in its own process group, stopped with
/// SIGTERM (then SIGKILL) to the whole group.
final class BenchProcess: Sendable {
    let run: Task<Void, Never>
    let stopRequest: AsyncStream<Void>.Continuation
    let started = StartedProcess()
    /// The file its standard output and error go to.
    let log: String

    /// The process id, once started.
    var processID: Int32? { started.id.withLock { $0 } }

    /// Whether the process has ended (or could not be started).
    var hasEnded: Bool { started.ended.withLock { $0 } }

    /// Where the running task records the process id, and that the process ended.
    final class StartedProcess: Sendable {
        let id = Mutex<Int32?>(nil)
        let ended = Mutex(false)
    }

    init(_ arguments: [String], log: String) {
        let (requests, stopRequest) = AsyncStream.makeStream(of: Void.self)
        self.stopRequest = stopRequest
        self.log = log
        let started = self.started
        run = Task {
            var options = PlatformOptions()
            options.processGroupID = 0
            defer { started.ended.withLock { $0 = true } }
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            guard let logFile = try? FileDescriptor.open(FilePath(log), .writeOnly, options: .append) else { return }
            _ = try? await Subprocess.run(
                .path(FilePath(arguments[0])), arguments: Arguments(Array(arguments.dropFirst())), platformOptions: options,
                input: .none, output: .fileDescriptor(logFile, closeAfterSpawningProcess: false),
                error: .fileDescriptor(logFile, closeAfterSpawningProcess: false)
            ) { execution in
                started.id.withLock { $0 = execution.processIdentifier.value }
                for await _ in requests { break }
                await execution.teardown(using: [
                    .send(signal: .terminate, toProcessGroup: true, allowedDurationToNextStep: .seconds(10)),
                    .send(signal: .kill, toProcessGroup: true, allowedDurationToNextStep: .seconds(1)),
                ])
            }
            try? logFile.close()
        }
    }

    /// Stops the process group and waits until it has ended.
    func stop() async {
        stopRequest.finish()
        await run.value
    }
}

extension HTTPClient {
    /// Waits until `GET path` on a loopback port answers 200: a benchmark's server or worker is up. Given
    /// the `process` that should answer, fails at once with the end of its log when it ends first.
    func waitUntilAnswering(port: Int, path: String, timeout: Duration, process: BenchProcess? = nil) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let response = try? await execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"), timeout: .seconds(2)),
                response.status == .ok
            {
                return
            }
            if let process, process.hasEnded {
                let log = (try? String(contentsOfFile: process.log, encoding: .utf8)) ?? ""
                throw BenchmarkError("the process that should answer on port \(port) ended:\n\(log.suffix(2000))")
            }
            try await _Concurrency.Task.sleep(for: .milliseconds(20))
        }
        throw BenchmarkError("nothing answered GET \(path) on port \(port) within \(timeout)")
    }

    /// Sends a request (a JSON `body`, if any) and returns the body of its answer; anything but 200 is an error.
    func answer(
        _ url: String, method: HTTPMethod = .GET, headers: [String: String] = [:], json body: Data? = nil, timeout: TimeAmount = .seconds(3600)
    ) async throws -> Data {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await execute(request, timeout: timeout)
        let answer = try await response.body.collect(upTo: 64 << 20)
        guard response.status == .ok else { throw BenchmarkError("\(url) answered \(response.status.code): \(String(buffer: answer).prefix(300))") }
        return Data(answer.readableBytesView)
    }
}

extension BenchProcess {
    /// Runs a command to its end and returns what it printed on standard output; throws with what it
    /// printed on standard error when it exits with another status than 0.
    static func output(of arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let pipe = Pipe()
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-bench-stderr-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: errors) }
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        process.standardOutput = pipe
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
            throw BenchmarkError("\(arguments.joined(separator: " ")) exited with \(process.terminationStatus): \(text.suffix(2000))")
        }
        return String(decoding: data, as: UTF8.self)
    }
}

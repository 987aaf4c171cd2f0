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

    /// The process id, once started.
    var processID: Int32? { started.id.withLock { $0 } }

    /// Where the running task records the process id.
    final class StartedProcess: Sendable {
        let id = Mutex<Int32?>(nil)
    }

    init(_ arguments: [String], log: String) {
        let (requests, stopRequest) = AsyncStream.makeStream(of: Void.self)
        self.stopRequest = stopRequest
        let started = self.started
        run = Task {
            var options = PlatformOptions()
            options.processGroupID = 0
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
    /// Waits until `GET path` on a loopback port answers 200: a benchmark's server or worker is up.
    func waitUntilAnswering(port: Int, path: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let response = try? await execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"), timeout: .seconds(2)),
                response.status == .ok
            {
                return
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

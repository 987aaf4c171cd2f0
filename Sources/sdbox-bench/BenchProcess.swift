import Foundation
import Subprocess
import SystemPackage

/// A child process of a benchmark (an sdbox server or worker), in its own process group, stopped with
/// SIGTERM (then SIGKILL) to the whole group.
final class BenchProcess: Sendable {
    let run: Task<Void, Never>
    let stopRequest: AsyncStream<Void>.Continuation

    init(_ arguments: [String], log: String) {
        let (requests, stopRequest) = AsyncStream.makeStream(of: Void.self)
        self.stopRequest = stopRequest
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

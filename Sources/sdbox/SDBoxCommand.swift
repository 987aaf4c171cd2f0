import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ReferenceWorker
import SDBoxServer

/// The `sdbox` command: the appliance server and its reference worker, in one binary.
@main
struct SDBoxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sdbox",
        abstract: "A Stable Diffusion API appliance: one GPU box, many models, an A1111-compatible API.",
        subcommands: [Serve.self, Worker.self],
        defaultSubcommand: Serve.self
    )
}

/// Options every subcommand shares.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    func bootstrap(label: String) -> Logger {
        let level = logLevel
        LoggingSystem.bootstrap { name in
            var handler = StreamLogHandler.standardOutput(label: name)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `sdbox serve`: runs the API server and the scheduler.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the sdbox server.")

    @Option(help: "YAML configuration file; flags override its keys.")
    var config: String?

    @Option(help: "Address to listen on (default 127.0.0.1).")
    var host: String?

    @Option(help: "Port to listen on (default 7860, A1111's).")
    var port: Int?

    @Option(help: "Folder for the database, images, models and logs (default ./sdbox-data).")
    var dataDir: String?

    @Option(help: "Most worker processes at once, over all models (default 2).")
    var maxInstances: Int?

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = logging.bootstrap(label: "sdbox")
        var configuration = ServerConfiguration()
        if let config {
            do {
                configuration = try ServerConfiguration.load(yaml: try String(contentsOfFile: config, encoding: .utf8))
            } catch let error as ConfigurationError {
                throw ValidationError("\(config): \(error.description)")
            } catch {
                throw ValidationError("cannot read \(config): \(error.localizedDescription)")
            }
        }
        if let host { configuration.host = host }
        if let port { configuration.port = port }
        if let dataDir { configuration.dataDirectory = dataDir }
        if let maxInstances {
            guard maxInstances >= 1 else { throw ValidationError("--max-instances must be at least 1") }
            configuration.maxInstances = maxInstances
        }
        let app = try await SDBoxApplication.build(configuration: configuration, executablePath: Self.executablePath(), logger: logger)
        try await app.runService()
    }

    /// The absolute path of this executable, for starting reference workers.
    static func executablePath() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// `sdbox worker`: the reference worker, an A1111-compatible server that draws test images.
struct Worker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the reference worker: an A1111-compatible API for one checkpoint that draws test images, not diffusion."
    )

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port: Int

    @Option(help: "Checkpoint file (.safetensors or .ckpt) to load.")
    var checkpoint: String

    @Option(name: .customLong("step-ms"), help: "Milliseconds per sampling step for one 512x512 image.")
    var stepMilliseconds: Int = 50

    @Option(name: .customLong("min-step-ms"), help: "Least milliseconds per sampling step, at any size.")
    var minimumStepMilliseconds: Int = 5

    @Option(name: .customLong("load-ms"), help: "Extra milliseconds to load the checkpoint, as moving weights to a GPU takes.")
    var loadMilliseconds: Int = 0

    @Option(help: "Exit when the process with this id is gone (sdbox passes its own).")
    var parentPid: Int32?

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = logging.bootstrap(label: "sdbox.worker")
        if let parentPid {
            // A worker whose sdbox died must not linger holding a port and a GPU.
            Task.detached {
                while kill(parentPid, 0) == 0 || errno == EPERM {
                    try? await Task.sleep(for: .seconds(1))
                }
                logger.warning("sdbox (pid \(parentPid)) is gone; exiting")
                Foundation.exit(0)
            }
        }
        let pace = ReferencePace(stepAt512: .milliseconds(stepMilliseconds), minimumStep: .milliseconds(minimumStepMilliseconds))
        try await ReferenceWorkerServer.run(
            ReferenceWorkerConfiguration(host: host, port: port, checkpointPath: checkpoint, pace: pace, loadTime: .milliseconds(loadMilliseconds)),
            logger: logger
        )
    }
}

import Appliance
import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ReferenceWorker
import SDBoxCore
import SDBoxServer
import Scheduler
import Storage

/// The `sdbox` command: the appliance server and its reference worker, in one binary.
@main
struct SDBoxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sdbox",
        abstract: "A Stable Diffusion API appliance: one GPU box, many models, an A1111-compatible API.",
        subcommands: [Serve.self, Worker.self, Doctor.self, Keys.self, Users.self, Models.self, Backup.self, Restore.self],
        defaultSubcommand: Serve.self
    )
}

/// Options every subcommand shares.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: Logger.Level?

    func bootstrap(label: String, default defaultLevel: Logger.Level = .info) -> Logger {
        let level = logLevel ?? defaultLevel
        LoggingSystem.bootstrap { name in ConsoleLogHandler(label: name, logLevel: level) }
        return Logger(label: label)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// The configuration options `serve` and `doctor` share: a YAML file, `SDBOX_*` variables over it, and
/// flags over both.
struct ConfigurationOptions: ParsableArguments {
    @Option(help: "YAML configuration file; SDBOX_* environment variables and flags override its keys.")
    var config: String?

    @Option(help: "Address to listen on (default 127.0.0.1).")
    var host: String?

    @Option(help: "Port to listen on (default 7860, A1111's).")
    var port: Int?

    @Option(help: "Folder for the database, images, models and logs (default ./sdbox-data).")
    var dataDir: String?

    @Option(help: "Most worker processes at once, over all models (default 2).")
    var maxInstances: Int?

    @Flag(help: "Require an API key on every request (config auth.required).")
    var requireAPIKeys = false

    /// The configuration in force, or a usage error naming what is wrong.
    func load() throws -> ServerConfiguration {
        var configuration = try Self.read(file: config)
        if let host { configuration.http.host = host }
        if let port { configuration.http.port = port }
        if let dataDir { configuration.dataDirectory = dataDir }
        if let maxInstances {
            guard maxInstances >= 1 else { throw ValidationError("--max-instances must be at least 1") }
            configuration.scheduler.maxInstances = maxInstances
        }
        if requireAPIKeys { configuration.auth.required = true }
        do {
            try configuration.checkSafety()
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
        return configuration
    }

    /// The configuration file `file` (if any) with the `SDBOX_*` variables over it, before any flag; a
    /// usage error naming what is wrong.
    static func read(file: String?) throws -> ServerConfiguration {
        var configuration = ServerConfiguration()
        if let file {
            do {
                configuration = try ServerConfiguration.load(yaml: try String(contentsOfFile: file, encoding: .utf8))
            } catch let error as ConfigurationError {
                throw ValidationError("\(file): \(error.description)")
            } catch {
                throw ValidationError("cannot read \(file): \(error.localizedDescription)")
            }
        }
        do {
            return try configuration.applyingEnvironment(ProcessInfo.processInfo.environment)
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
    }
}

/// `sdbox serve`: runs the API server and the scheduler.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the sdbox server.")

    @OptionGroup var options: ConfigurationOptions
    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = logging.bootstrap(label: "sdbox")
        let configuration = try options.load()
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let taskBuckets: [Duration] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800].map { .milliseconds(Int64($0 * 1000)) }
        factory.durationHistogramBuckets = ["sdbox_task_latency_seconds": taskBuckets, "sdbox_task_run_seconds": taskBuckets]
        MetricsSystem.bootstrap(factory)
        let app = try await SDBoxApplication.build(
            configuration: configuration, executablePath: Self.executablePath(), metrics: registry, logger: logger
        )
        try await app.runService()
    }

    /// The absolute path of this executable, for starting reference workers.
    static func executablePath() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// `sdbox doctor`: checks the box and the configuration, one verdict per line; exits 1 if any check failed.
struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check GPUs, driver, worker backend, data and models folders, database, port and configuration."
    )

    @OptionGroup var options: ConfigurationOptions
    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = logging.bootstrap(label: "sdbox.doctor", default: .warning)
        let configuration: ServerConfiguration
        do {
            configuration = try options.load()
        } catch let error as ValidationError {
            print("[FAIL] config: \(error.message)")
            throw ExitCode(1)
        }
        let findings = await DoctorChecks(configuration: configuration, executablePath: Serve.executablePath(), logger: logger).run()
        for finding in findings { print(finding.line) }
        let failed = findings.filter { $0.verdict == .failure }.count
        let warned = findings.filter { $0.verdict == .warning }.count
        print(failed == 0 ? "sdbox doctor: ready (\(warned) warnings)" : "sdbox doctor: \(failed) problems to fix")
        if failed > 0 { throw ExitCode(1) }
    }
}

/// `sdbox keys`: makes, lists and revokes API keys in the database a box uses (the server need not stop):
/// the data folder's LMDB, or the PostgreSQL database its configuration names.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage API keys.", subcommands: [Add.self, List.self, Revoke.self]
    )

    /// The database whose keys and users are managed: the configuration's (`--config`, `SDBOX_*`), or the
    /// data folder's LMDB.
    struct Location: ParsableArguments {
        @Option(help: "The configuration file: with database.url, keys and users are kept in that PostgreSQL database.")
        var config: String?

        @Option(help: "The data folder (default: the configuration's dataDir, else ./sdbox-data).")
        var dataDir: String?

        /// Runs `body` with the keys and users of the database, opened for it and closed after.
        func withStores<R: Sendable>(_ body: (any KeyStore, UserAccounts) async throws -> R) async throws -> R {
            let configuration = try ConfigurationOptions.read(file: config)
            if let postgres = configuration.database.postgres {
                let database = try await PostgresDatabase.open(
                    postgres, maxConnections: 2, timeout: .seconds(configuration.database.timeoutSeconds), logger: Logger(label: "sdbox")
                )
                do {
                    let result = try await body(
                        PostgresKeyStore(database: database), UserAccounts(store: PostgresUserStore(database: database), sessionSeconds: 3600)
                    )
                    await database.close()
                    return result
                } catch {
                    await database.close()
                    throw error
                }
            }
            let database = try Database(path: DataFolder(dataDir ?? configuration.dataDirectory).database)
            return try await body(LMDBKeyStore(database: database), UserAccounts(store: LMDBUserStore(database: database), sessionSeconds: 3600))
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a key; prints it last (it is shown this once).")
        @OptionGroup var location: Location
        @Option(help: "The user the key acts for (the <user> of its images).")
        var user: String
        @Option(help: "admin (models, pools, keys, all tasks) or user (generate; own tasks only).")
        var role: Role = .user

        func run() async throws {
            if let problem = APIKeyRecord.problem(withUserName: user) { throw ValidationError(problem) }
            let (record, key) = APIKeyRecord.make(user: user, role: role)
            try await location.withStores { keys, _ in try await keys.insert(record) }
            print("made \(role.rawValue) key \(record.id) for user \(user); keep it, it is not shown again: \(key)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List keys (never their secrets).")
        @OptionGroup var location: Location

        func run() async throws {
            for key in try await location.withStores({ keys, _ in try await keys.list() }) {
                let state = key.revokedAt.map { "revoked \($0.ISO8601Format())" } ?? "active"
                print("\(key.id)  \(key.role.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0))  \(key.user)  created \(key.createdAt.ISO8601Format())  \(state)")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key by its id.")
        @OptionGroup var location: Location
        @Argument(help: "The key's id (as `sdbox keys list` shows).")
        var id: String

        func run() async throws {
            guard try await location.withStores({ keys, _ in try await keys.revoke(id) }) != nil else { throw ValidationError("no key with id \(id)") }
            print("revoked \(id)")
        }
    }
}

extension Role: ExpressibleByArgument {}

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

    @Option(name: .customLong("start-ms"), help: "Milliseconds before loading, as a real worker's process start and imports take.")
    var startMilliseconds: Int = 0

    @Option(name: .customLong("reload-ms"), help: "Milliseconds to bring a checkpoint parked by /sdapi/v1/unload-checkpoint back.")
    var reloadMilliseconds: Int = 0

    @Option(name: .customLong("gpu-memory-mib"), help: "GPU memory the loaded checkpoint stands for, reported by /sdapi/v1/memory (none while parked).")
    var gpuMemoryMiB: Int = 0

    @Option(name: .customLong("api-auth"), help: "user:password every call must carry as HTTP basic authentication, as A1111's --api-auth.")
    var apiAuth: String?

    @Option(help: "Exit when the process with this id is gone (sdbox passes its own).")
    var parentPid: Int32?

    @OptionGroup var logging: LoggingOptions

    @Argument(
        parsing: .allUnrecognized,
        help: "A1111's own flags (--api, --nowebui, ...), which a pool's extraArgs may carry: accepted and ignored."
    )
    var a1111Flags: [String] = []

    func run() async throws {
        let logger = logging.bootstrap(label: "sdbox.worker")
        if !a1111Flags.isEmpty { logger.info("ignoring A1111 flags", metadata: ["flags": "\(a1111Flags)"]) }
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
            ReferenceWorkerConfiguration(
                host: host, port: port, checkpointPath: checkpoint, pace: pace, loadTime: .milliseconds(loadMilliseconds),
                startTime: .milliseconds(startMilliseconds), reloadTime: .milliseconds(reloadMilliseconds), gpuMemoryMiB: gpuMemoryMiB,
                apiAuth: apiAuth
            ),
            logger: logger
        )
    }
}

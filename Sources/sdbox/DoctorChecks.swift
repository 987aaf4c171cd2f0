import Appliance
import Foundation
import Glibc
import Logging
import SDBoxCore
import SDBoxServer
import Scheduler
import Storage
import Subprocess
import SystemPackage

/// What `sdbox doctor` checks: what sdbox needs on this box, with a clear verdict for each: GPUs and
/// driver, the worker backend (found, and starts), the data and models folders, the database (LMDB, or
/// PostgreSQL when `database.url` is set), the port, and the configuration.
struct DoctorChecks: Sendable {
    /// One check's outcome.
    struct Finding: Sendable {
        enum Verdict: String, Sendable {
            case ok = "OK"
            case warning = "WARN"
            case failure = "FAIL"
        }
        let verdict: Verdict
        let subject: String
        let detail: String

        /// The line `sdbox doctor` prints.
        var line: String {
            let tag = "[\(verdict.rawValue)]".padding(toLength: 6, withPad: " ", startingAt: 0)
            return "\(tag) \(subject): \(detail)"
        }
    }

    let configuration: ServerConfiguration
    let executablePath: String
    let logger: Logger

    init(configuration: ServerConfiguration, executablePath: String, logger: Logger) {
        self.configuration = configuration
        self.executablePath = executablePath
        self.logger = logger
    }

    /// Runs every check, in order.
    func run() async -> [Finding] {
        var findings: [Finding] = [Finding(verdict: .ok, subject: "config", detail: "valid")]
        findings += await gpus()
        let folder = DataFolder(configuration)
        findings.append(writableFolder(folder.path, subject: "data folder"))
        if folder.isShared { findings.append(writableFolder(folder.shared, subject: "shared folder")) }
        findings.append(modelsFolder(folder.models))
        if let location = configuration.database.postgres {
            findings.append(await postgres(location))
        } else {
            findings.append(await database(folder.database))
        }
        findings.append(port())
        findings += await workerBackend(data: folder.path)
        return findings
    }

    func gpus() async -> [Finding] {
        let inventory = await GPUInventory.detect(configured: configuration.scheduler.gpus, cpuSlots: configuration.scheduler.cpuSlots)
        var findings: [Finding] = []
        switch inventory.source {
        case .none:
            findings.append(Finding(verdict: .warning, subject: "GPUs", detail: "no GPU: CPU-only mode, \(inventory.cpuSlots) worker slots (nvidia-smi not found or it lists no GPU)"))
        case .nvidiaSMI, .configuration:
            let list = inventory.gpus.map { "\($0.index): \($0.name), \($0.memoryMiB) MiB free" }.joined(separator: "; ")
            findings.append(Finding(verdict: .ok, subject: "GPUs", detail: "\(inventory.gpus.count) from \(inventory.source.rawValue): \(list)"))
        }
        if let driver = await Self.output(of: "nvidia-smi", ["--query-gpu=driver_version", "--format=csv,noheader"]) {
            findings.append(Finding(verdict: .ok, subject: "driver", detail: "NVIDIA \(driver.split(separator: "\n").first ?? "")"))
        } else {
            findings.append(Finding(verdict: .warning, subject: "driver", detail: "no NVIDIA driver (nvidia-smi did not run)"))
        }
        return findings
    }

    /// Whether `path` can be written (a file made and renamed there, as every write of sdbox's is), with
    /// its free space.
    func writableFolder(_ path: String, subject: String) -> Finding {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            let probe = path + "/.doctor-\(UUID().uuidString)"
            guard FileManager.default.createFile(atPath: probe, contents: Data("ok".utf8)) else {
                return Finding(verdict: .failure, subject: subject, detail: "\(path) is not writable")
            }
            defer { unlink(probe + ".renamed") }
            guard rename(probe, probe + ".renamed") == 0 else {
                unlink(probe)
                return Finding(verdict: .failure, subject: subject, detail: "\(path): a file cannot be renamed there (\(String(cString: strerror(errno))))")
            }
        } catch {
            return Finding(verdict: .failure, subject: subject, detail: "cannot create \(path): \(error.localizedDescription)")
        }
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return Finding(verdict: .warning, subject: subject, detail: "\(path) is writable; free space unknown") }
        let free = Double(info.f_bavail) * Double(info.f_frsize) / Double(1 << 30)
        let detail = String(format: "%@ is writable, %.1f GiB free", path, free)
        return Finding(verdict: free < 10 ? .warning : .ok, subject: subject, detail: free < 10 ? detail + " (less than 10 GiB)" : detail)
    }

    func modelsFolder(_ root: String) -> Finding {
        var counts: [String] = []
        var checkpoints = 0
        for type in ModelType.allCases {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: type.folder(in: root))) ?? [])
                .filter { ModelType.problem(withName: $0) == nil }
            if type == .stableDiffusion { checkpoints = files.count }
            if !files.isEmpty { counts.append("\(files.count) \(type.rawValue)") }
        }
        if checkpoints == 0 {
            let note = configuration.workers.usesReferenceWorker ? " (a demo checkpoint is written at start)" : "; upload one (PUT /admin/models/stableDiffusion/NAME)"
            return Finding(verdict: .warning, subject: "models folder", detail: "\(root): no checkpoint\(note)")
        }
        return Finding(verdict: .ok, subject: "models folder", detail: "\(root): " + counts.joined(separator: ", "))
    }

    func database(_ path: String) async -> Finding {
        do {
            let database = try Database(path: path)
            let active = try await LMDBTaskStore(database: database).activeTasks()
            let models = try await LMDBCatalogStore(database: database).models()
            return Finding(verdict: .ok, subject: "database", detail: "\(path) readable (\(models.count) models, \(active.count) unfinished tasks)")
        } catch {
            return Finding(verdict: .failure, subject: "database", detail: "\(path): \(error)")
        }
    }

    /// The PostgreSQL database of `database.url`: reached, and its schema's version (migrated at start).
    func postgres(_ location: PostgresLocation) async -> Finding {
        do {
            let (current, latest) = try await PostgresDatabase.schemaVersion(at: location, logger: logger)
            if current == latest {
                return Finding(verdict: .ok, subject: "database", detail: "\(location.masked) reached, schema version \(current)")
            }
            if current < latest {
                return Finding(verdict: .ok, subject: "database", detail: "\(location.masked) reached, schema version \(current); `sdbox serve` migrates it to \(latest)")
            }
            return Finding(verdict: .failure, subject: "database", detail: "\(location.masked): schema version \(current) is newer than this sdbox knows (\(latest)); upgrade sdbox")
        } catch {
            return Finding(verdict: .failure, subject: "database", detail: "\(error)")
        }
    }

    func port() -> Finding {
        let subject = "port"
        let address = "\(configuration.http.host):\(configuration.http.port)"
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return Finding(verdict: .warning, subject: subject, detail: "cannot test \(address)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(configuration.http.port).bigEndian)
        guard inet_pton(AF_INET, configuration.http.host == "localhost" ? "127.0.0.1" : configuration.http.host, &addr.sin_addr) == 1 else {
            return Finding(verdict: .warning, subject: subject, detail: "\(configuration.http.host) is not an IPv4 address; not tested")
        }
        let bound = withUnsafePointer(to: &addr) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if bound == 0 { return Finding(verdict: .ok, subject: subject, detail: "\(address) is free") }
        return Finding(verdict: .warning, subject: subject, detail: "\(address) is in use (is sdbox already running?)")
    }

    /// The default launch profile: its program found, and a worker started from it answering.
    func workerBackend(data: String) async -> [Finding] {
        let name = configuration.workers.defaultProfileName
        guard let template = configuration.workers.launchProfiles[name] else {
            return [Finding(verdict: .failure, subject: "worker backend", detail: "no launch profile named '\(name)'")]
        }
        var findings: [Finding] = []
        if template.isReferenceWorker {
            findings.append(Finding(verdict: .warning, subject: "worker backend", detail: "the built-in reference worker: it draws test images, not diffusion (configure workers.launch for A1111, Forge or SD.Next)"))
        } else {
            let program = WorkerLaunchProfile.fill(template.command.first ?? "", with: ["data_dir": data, "models_dir": data + "/models"])
            guard let found = Self.locate(program) else {
                return [Finding(verdict: .failure, subject: "worker backend", detail: "profile '\(name)': program '\(program)' not found")]
            }
            findings.append(Finding(verdict: .ok, subject: "worker backend", detail: "profile '\(name)': \(found)"))
        }
        // Start one worker on a checkpoint, as the scheduler would.
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-doctor-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let models = ModelType.stableDiffusion.folder(in: data + "/models")
        var checkpoint = ((try? FileManager.default.contentsOfDirectory(atPath: models)) ?? [])
            .filter { ModelType.problem(withName: $0) == nil }.sorted().first.map { models + "/" + $0 }
        if checkpoint == nil && template.isReferenceWorker {
            try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            checkpoint = scratch + "/" + DemoCheckpoint.fileName
            try? DemoCheckpoint.contents().write(to: URL(fileURLWithPath: checkpoint!))
        }
        guard let checkpoint, let port = FreePort.allocate() else {
            findings.append(Finding(verdict: .warning, subject: "worker start", detail: "not tried: no checkpoint to load"))
            return findings
        }
        try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let values = WorkerLaunchProfile.placeholders(
            port: port, checkpoint: checkpoint, modelsDirectory: data + "/models", dataDirectory: data, executablePath: executablePath
        )
        let result = await WorkerProcess.trial(
            profile: template.resolved(values), port: port, logPath: scratch + "/worker.log", runDirectory: scratch,
            client: HTTPWorkerClient(), logger: logger
        )
        switch result {
        case .success(let duration):
            findings.append(Finding(verdict: .ok, subject: "worker start", detail: String(format: "loaded %@ and answered in %.1f s", (checkpoint as NSString).lastPathComponent, duration.seconds)))
        case .failure(let failure):
            let tail = failure.lastOutput.suffix(3).joined(separator: " | ")
            findings.append(Finding(verdict: .failure, subject: "worker start", detail: "did not become ready (\(failure.status)): \(tail)"))
        }
        return findings
    }

    /// The path of a program: as given when it has a slash, else searched on `PATH`; `{sdbox}` is this binary.
    static func locate(_ program: String) -> String? {
        if program == "{sdbox}" { return "sdbox" }
        if program.contains("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(program)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// What a command printed, or nil if it could not run or failed.
    static func output(of program: String, _ arguments: [String]) async -> String? {
        guard let result = try? await Subprocess.run(.name(program), arguments: Arguments(arguments), output: .string(limit: 1 << 16), error: .discarded),
            result.terminationStatus.isSuccess
        else { return nil }
        return result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

import Foundation
import Logging
import Subprocess
import SystemPackage
import Synchronization

/// Why a trial worker did not become ready.
public struct WorkerTrialFailure: Error, Sendable {
    public let status: String
    public let lastOutput: [String]
}

/// How a worker process ended.
public struct WorkerExit: Sendable {
    /// The termination status, e.g. `exited(1)` or `signaled(9)`, or why it could not start.
    public let status: String
    /// Whether the worker became ready before it ended.
    public let becameReady: Bool
    /// The last lines the worker printed, for error messages.
    public let lastOutput: [String]
}

/// One worker process: spawned in its own process group with swift-subprocess, its output copied to a
/// log file, its readiness probed, and stopped (SIGTERM, then SIGKILL, to the whole group) on request
/// or when the task supervising it is cancelled.
///
/// A pid file under the run folder names every live worker so that workers left behind by a killed
/// sdbox can be reaped at the next start (see ``WorkerReaper``).
public final class WorkerProcess: WorkerSlot {
    public let id: Int
    public let model: String
    public let port: Int
    /// The resolved profile: placeholders filled in.
    let profile: WorkerLaunchProfile
    let logPath: String
    let runDirectory: String
    let stopSignal = StopSignal()
    let exitSignal = StopSignal()
    let pid = Mutex<Int32?>(nil)
    /// Whether the stop skips SIGTERM (a worker that stopped answering may not handle it).
    let killAtOnce = Mutex(false)

    init(id: Int, model: String, port: Int, profile: WorkerLaunchProfile, logPath: String, runDirectory: String) {
        self.id = id
        self.model = model
        self.port = port
        self.profile = profile
        self.logPath = logPath
        self.runDirectory = runDirectory
    }

    /// The process id, once started.
    public var processID: Int32? { pid.withLock { $0 } }

    public var endpoint: WorkerEndpoint { .local(port: port) }

    /// A process sdbox started holds its one checkpoint.
    public var namesCheckpointInCalls: Bool { false }

    /// Kills the process: it stopped answering.
    public func abandon() { kill() }

    /// Asks the worker to stop; ``run(probe:onReady:logger:)`` returns once it has.
    public func stop() { stopSignal.fire() }

    /// Kills the worker's process group with SIGKILL at once: for a worker that stopped answering.
    public func kill() {
        killAtOnce.withLock { $0 = true }
        stopSignal.fire()
    }

    /// Starts the process and supervises it until it ends.
    ///
    /// - Parameters:
    ///   - probe: Asks the worker whether it is ready; polled until it says yes or the startup timeout passes.
    ///     A yes from another process that took the worker's port first stops the worker (see ``PortListener``;
    ///     unless the profile says another process listens for the worker: ``WorkerLaunchProfile/ownsPort``).
    ///   - onReady: Called once when the probe first succeeds.
    func run(probe: @escaping @Sendable () async -> Bool, onReady: @escaping @Sendable () async -> Void, logger: Logger) async -> WorkerExit {
        defer { exitSignal.fire() }
        let command = profile.command
        guard let executable = command.first else {
            return WorkerExit(status: "empty launch command", becameReady: false, lastOutput: [])
        }
        let output = WorkerOutput(logPath: logPath)
        defer { output.close() }

        var options = PlatformOptions()
        options.processGroupID = 0
        options.teardownSequence = Self.teardown
        var environment: [Environment.Key: String?] = [:]
        for (key, value) in profile.environment { environment[Environment.Key(stringLiteral: key)] = value }
        let executablePath: Executable = executable.contains("/") ? .path(FilePath(executable)) : .name(executable)
        do {
            let result = try await Subprocess.run(
                executablePath,
                arguments: Arguments(Array(command.dropFirst())),
                environment: .inherit.updating(environment),
                workingDirectory: profile.workingDirectory.map { FilePath($0) },
                platformOptions: options,
                input: .none,
                output: .sequence,
                error: .combinedWithOutput
            ) { execution in
                let processID = execution.processIdentifier.value
                self.pid.withLock { $0 = processID }
                let pidFile = WorkerReaper.record(pid: processID, in: runDirectory)
                defer { if let pidFile { unlink(pidFile) } }
                logger.info("worker started", metadata: ["worker": "\(id)", "model": "\(model)", "pid": "\(processID)", "port": "\(port)"])
                await withTaskGroup(of: Child.self) { group in
                    group.addTask {
                        // Copies output to the log file; ends when the process group closes its output.
                        do {
                            for try await line in execution.standardOutput.strings() {
                                output.append(line)
                            }
                        } catch {}
                        return .outputEnded
                    }
                    group.addTask {
                        await self.stopSignal.wait()
                        await execution.teardown(using: self.killAtOnce.withLock { $0 } ? Self.immediateKill : Self.teardown)
                        return .stopped
                    }
                    group.addTask {
                        let deadline = ContinuousClock.now + .seconds(self.profile.startupTimeoutSeconds)
                        while !Task.isCancelled && ContinuousClock.now < deadline {
                            if await probe() {
                                if self.profile.ownsPort, case .stranger(let holder) = await PortListener.of(port: self.port, root: processID) {
                                    output.append("sdbox: port \(self.port) is held by another process (pid \(holder)), not this worker; stopping it")
                                    logger.warning("a worker's port is held by another process", metadata: ["worker": "\(self.id)", "port": "\(self.port)", "pid": "\(holder)"])
                                    self.stop()
                                    return .probeFinished
                                }
                                output.markReady()
                                await onReady()
                                return .probeFinished
                            }
                            try? await Task.sleep(for: .milliseconds(100))
                        }
                        if !Task.isCancelled {
                            output.append("sdbox: worker not ready after \(self.profile.startupTimeoutSeconds) s; stopping it")
                            self.stop()
                        }
                        return .probeFinished
                    }
                    // Supervision ends when the process has ended (its output closed) or was stopped.
                    while let child = await group.next(), child == .probeFinished {}
                    group.cancelAll()
                }
            }
            return WorkerExit(status: "\(result.terminationStatus)", becameReady: output.isReady, lastOutput: output.lastLines)
        } catch {
            return WorkerExit(status: "could not start '\(executable)': \(error)", becameReady: false, lastOutput: output.lastLines)
        }
    }

    /// Starts a worker with `profile` (resolved), waits until it is ready, and stops it: a check that a
    /// backend can start. Returns how long it took to become ready, or why it did not.
    public static func trial(
        profile: WorkerLaunchProfile, port: Int, logPath: String, runDirectory: String, client: any WorkerClient, logger: Logger
    ) async -> Result<Duration, WorkerTrialFailure> {
        let worker = WorkerProcess(id: 0, model: "trial", port: port, profile: profile, logPath: logPath, runDirectory: runDirectory)
        let started = ContinuousClock.now
        let readyAfter = Mutex<Duration?>(nil)
        let exit = await worker.run(
            probe: { await client.ping(.local(port: port)) },
            onReady: {
                readyAfter.withLock { $0 = started.duration(to: .now) }
                worker.stop()
            },
            logger: logger
        )
        if let duration = readyAfter.withLock({ $0 }) { return .success(duration) }
        return .failure(WorkerTrialFailure(status: exit.status, lastOutput: exit.lastOutput))
    }

    /// Runs a call to the worker, failing it as soon as the worker process ends rather than waiting
    /// for the connection to time out.
    public func whileAlive<T: Sendable>(_ call: @escaping @Sendable () async throws(WorkerCallError) -> T) async throws(WorkerCallError) -> T {
        try await exitSignal.guarding(call, failure: "the worker process ended")
    }

    enum Child: Sendable { case outputEnded, stopped, probeFinished }

    static let immediateKill: [TeardownStep] = [
        .send(signal: .kill, toProcessGroup: true, allowedDurationToNextStep: .seconds(2))
    ]

    static let teardown: [TeardownStep] = [
        .send(signal: .terminate, toProcessGroup: true, allowedDurationToNextStep: .seconds(10)),
        .send(signal: .kill, toProcessGroup: true, allowedDurationToNextStep: .seconds(2)),
    ]
}

/// A worker's output: copied to its log file, the last lines kept for error messages.
final class WorkerOutput: Sendable {
    struct State {
        var log: FileHandle?
        var lastLines: [String] = []
        var ready = false
        /// Lines the log file could not take (the disk was full), told in the log once it takes them again.
        var droppedLines = 0
    }
    let state: Mutex<State>

    convenience init(logPath: String) {
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        self.init(log: FileHandle(forWritingAtPath: logPath))
    }

    init(log: FileHandle?) {
        state = Mutex(State(log: log))
    }

    func append(_ line: String) {
        state.withLock { state in
            if let log = state.log {
                let dropped = state.droppedLines > 0 ? "[sdbox: \(state.droppedLines) lines dropped, the disk was full]\n" : ""
                do {
                    try log.write(contentsOf: Data((dropped + line + "\n").utf8))
                    state.droppedLines = 0
                } catch {
                    state.droppedLines += 1
                }
            }
            state.lastLines.append(line)
            if state.lastLines.count > 20 { state.lastLines.removeFirst(state.lastLines.count - 20) }
        }
    }

    func markReady() { state.withLock { $0.ready = true } }
    var isReady: Bool { state.withLock { $0.ready } }
    var lastLines: [String] { state.withLock { $0.lastLines } }

    func close() {
        state.withLock { state in
            try? state.log?.close()
            state.log = nil
        }
    }
}

/// Kills worker process groups that a previous sdbox left running (it was killed before it could stop
/// them), using the pid files each worker leaves in the run folder while it lives.
public enum WorkerReaper {
    /// Writes a pid file holding the process's start time, so that a reused pid is never mistaken for it.
    static func record(pid: Int32, in directory: String) -> String? {
        guard let start = startTime(of: pid) else { return nil }
        let path = "\(directory)/worker-\(pid).pid"
        return FileManager.default.createFile(atPath: path, contents: Data("\(pid) \(start)\n".utf8)) ? path : nil
    }

    /// Kills the process group of every recorded worker that is still the process it was, and removes
    /// the pid files. Returns the pids it killed.
    @discardableResult
    public static func reap(in directory: String) -> [Int32] {
        var killed: [Int32] = []
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for file in files where file.hasPrefix("worker-") && file.hasSuffix(".pid") {
            let path = "\(directory)/\(file)"
            let fields = (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: " ") ?? []
            if fields.count == 2, let pid = Int32(fields[0]), let start = UInt64(fields[1].trimmingCharacters(in: .whitespacesAndNewlines)),
                startTime(of: pid) == start
            {
                kill(-pid, SIGKILL)
                killed.append(pid)
            }
            unlink(path)
        }
        return killed
    }

    /// Field 22 of `/proc/<pid>/stat`: the process's start time in clock ticks since boot.
    static func startTime(of pid: Int32) -> UInt64? {
        guard let fields = ProcFile.statFields(of: pid), fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }
}

import Foundation

/// How to start a worker process for one checkpoint: a command with placeholders, filled in per worker.
///
/// Placeholders: `{port}` (the port the worker must listen on, on 127.0.0.1), `{checkpoint}` (the
/// checkpoint's full path), `{checkpoint_name}` (its file name), `{models_dir}` (the models root in
/// A1111's layout), `{data_dir}`, `{sdbox}` (this executable), `{sdbox_pid}` (its process id) and
/// `{gpu_memory_mib}` (the GPU memory reserved for the worker, its pool's `gpuMemoryMiB`). An A1111 install is started with
/// `["python", "launch.py", "--api", "--nowebui", "--port", "{port}", "--ckpt", "{checkpoint}"]`.
public struct WorkerLaunchProfile: Codable, Sendable, Equatable {
    public var command: [String]
    public var workingDirectory: String?
    public var environment: [String: String]
    /// How long a worker may take to load its checkpoint and answer `/internal/ping`.
    public var startupTimeoutSeconds: Double
    /// Whether the command's process, or one it starts, listens on `{port}` itself, so that another
    /// listener there is a process that took the port first (see ``PortListener``). False for a command
    /// that has another process listen for it, such as a container runtime's proxy.
    public var ownsPort: Bool

    public init(
        command: [String], workingDirectory: String? = nil, environment: [String: String] = [:], startupTimeoutSeconds: Double = 600,
        ownsPort: Bool = true
    ) {
        self.command = command
        self.workingDirectory = workingDirectory
        self.environment = environment
        self.startupTimeoutSeconds = startupTimeoutSeconds
        self.ownsPort = ownsPort
    }

    /// The built-in reference worker (`sdbox worker`), which draws test images.
    public static func reference(
        stepMilliseconds: Int = 50, minimumStepMilliseconds: Int = 5, loadMilliseconds: Int = 0, startMilliseconds: Int = 0, reloadMilliseconds: Int = 0
    ) -> Self {
        WorkerLaunchProfile(
            command: [
                "{sdbox}", "worker", "--port", "{port}", "--checkpoint", "{checkpoint}",
                "--step-ms", "\(stepMilliseconds)", "--min-step-ms", "\(minimumStepMilliseconds)", "--load-ms", "\(loadMilliseconds)",
                "--start-ms", "\(startMilliseconds)", "--reload-ms", "\(reloadMilliseconds)", "--gpu-memory-mib", "{gpu_memory_mib}",
                "--parent-pid", "{sdbox_pid}",
            ],
            startupTimeoutSeconds: 120
        )
    }

    /// sdbox's stable-diffusion.cpp worker (real diffusion on the CPU), as `workers/sdcpp/install.sh` installs
    /// it into `<data dir>/sdcpp-venv`.
    public static let sdcpp = WorkerLaunchProfile(
        command: [
            "{data_dir}/sdcpp-venv/bin/sdbox-sdcpp-worker", "--port", "{port}", "--ckpt", "{checkpoint}",
            "--models-dir", "{models_dir}", "--parent-pid", "{sdbox_pid}",
        ],
        startupTimeoutSeconds: 600
    )

    /// Whether this profile starts sdbox's own reference worker.
    public var isReferenceWorker: Bool {
        command.count >= 2 && command[0] == "{sdbox}" && command[1] == "worker"
    }

    /// The command with its placeholders filled in.
    public func resolvedCommand(_ values: [String: String]) -> [String] {
        command.map { Self.fill($0, with: values) }
    }

    /// The placeholder values for one worker.
    public static func placeholders(
        port: Int, checkpoint: String, modelsDirectory: String, dataDirectory: String, executablePath: String, gpuMemoryMiB: Int = 0
    ) -> [String: String] {
        [
            "port": "\(port)", "checkpoint": checkpoint, "checkpoint_name": (checkpoint as NSString).lastPathComponent,
            "models_dir": modelsDirectory, "data_dir": dataDirectory, "sdbox": executablePath, "sdbox_pid": "\(getpid())",
            "gpu_memory_mib": "\(gpuMemoryMiB)",
        ]
    }

    /// The profile for one worker: placeholders filled in everywhere, `extraArgs` appended to the command
    /// and `environment` over the profile's.
    public func resolved(_ values: [String: String], extraArgs: [String] = [], environment extra: [String: String] = [:]) -> WorkerLaunchProfile {
        var profile = self
        profile.command = resolvedCommand(values) + extraArgs
        profile.environment = environment.merging(extra) { _, own in own }.mapValues { Self.fill($0, with: values) }
        profile.workingDirectory = workingDirectory.map { Self.fill($0, with: values) }
        return profile
    }

    /// `text` with every `{name}` placeholder of `values` filled in.
    public static func fill(_ text: String, with values: [String: String]) -> String {
        values.reduce(text) { text, pair in text.replacingOccurrences(of: "{\(pair.key)}", with: pair.value) }
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty, contains(target) else { return self }
        return split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

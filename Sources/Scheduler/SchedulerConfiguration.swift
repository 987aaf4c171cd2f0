import Foundation
import SDBoxCore

/// Settings of the ``Scheduler``.
public struct SchedulerConfiguration: Sendable {
    /// The most worker processes alive at once, over all pools (the original's "control" concurrency).
    public var maxInstances: Int
    /// How many times a task is handed to a worker before a worker failure fails it for good.
    public var maxAttempts: Int
    /// How many failed starts in a row mark a model `failed` and fail its queued tasks.
    public var maxStartFailures: Int
    /// The longest a task of a model waits for a slot held by another model before that model yields.
    public var fairnessWaitSeconds: Double
    /// How many seconds of waiting one priority level is worth.
    public var prioritySeconds: Double
    /// How often a busy worker is pinged, and the timeout of each ping.
    public var livenessSeconds: Double
    /// Failed pings in a row after which a busy worker is deemed hung and killed.
    public var livenessFailures: Int
    /// Settings of every pool, unless a pool's own settings say otherwise. All fields are set.
    public var poolDefaults: PoolSettings
    /// Named ways to start workers; pools choose one by name (`PoolSettings.profile`).
    public var profiles: [String: WorkerLaunchProfile]
    /// The profile of pools that name none.
    public var defaultProfile: String
    /// GPUs described by configuration; when empty, `nvidia-smi` is asked.
    public var gpus: [GPU]
    /// Workers at once when the box has no GPU.
    public var cpuSlots: Int
    /// The models root, in A1111's layout (`Stable-diffusion/`, ...).
    public var modelsDirectory: String
    /// Where workers' pid files live.
    public var runDirectory: String
    /// Where workers' output is logged.
    public var logDirectory: String
    public var dataDirectory: String
    /// The sdbox executable, for the reference worker's `{sdbox}` placeholder.
    public var executablePath: String

    /// The built-in pool defaults.
    public static let builtInPoolDefaults = PoolSettings(
        minInstances: 0, maxInstances: 1, idleTimeoutSeconds: 600, gpuMemoryMiB: 8192, taskTimeoutSeconds: 3600,
        environment: [:], extraArgs: []
    )

    public init(
        maxInstances: Int = 2, maxAttempts: Int = 2, maxStartFailures: Int = 3, fairnessWaitSeconds: Double = 60,
        prioritySeconds: Double = 60, livenessSeconds: Double = 10, livenessFailures: Int = 3, poolDefaults: PoolSettings = builtInPoolDefaults,
        profiles: [String: WorkerLaunchProfile] = ["reference": .reference()], defaultProfile: String = "reference",
        gpus: [GPU] = [], cpuSlots: Int = 4, dataDirectory: String, executablePath: String
    ) {
        self.maxInstances = maxInstances
        self.maxAttempts = maxAttempts
        self.maxStartFailures = maxStartFailures
        self.fairnessWaitSeconds = fairnessWaitSeconds
        self.prioritySeconds = prioritySeconds
        self.livenessSeconds = livenessSeconds
        self.livenessFailures = livenessFailures
        self.poolDefaults = poolDefaults.merged(over: Self.builtInPoolDefaults)
        self.profiles = profiles
        self.defaultProfile = defaultProfile
        self.gpus = gpus
        self.cpuSlots = cpuSlots
        self.dataDirectory = dataDirectory
        self.modelsDirectory = dataDirectory + "/models"
        self.runDirectory = dataDirectory + "/run"
        self.logDirectory = dataDirectory + "/logs"
        self.executablePath = executablePath
    }

    /// A pool's settings with every field decided: its own over the defaults.
    public func effectiveSettings(_ own: PoolSettings) -> PoolSettings {
        own.merged(over: poolDefaults)
    }

    /// What the planner needs of a pool's settings.
    public func policy(_ own: PoolSettings) -> PoolPolicy {
        let settings = effectiveSettings(own)
        return PoolPolicy(
            minInstances: settings.minInstances ?? 0, maxInstances: max(1, settings.maxInstances ?? 1),
            idleTimeout: TimeInterval(settings.idleTimeoutSeconds ?? 600), gpuMemoryMiB: settings.gpuMemoryMiB ?? 0
        )
    }
}

import Foundation
import SDBoxCore

/// Settings of the ``Scheduler``: the configuration's `scheduler` section, and what sdbox fills in at start
/// (the launch profiles from `workers`, the data folder and this executable).
public struct SchedulerConfiguration: Sendable, Equatable {
    /// The most worker processes alive at once, over all pools (the original's "control" concurrency).
    public var maxInstances = 2
    /// How many times a task is handed to a worker before a worker failure fails it for good.
    public var maxAttempts = 2
    /// How many failed starts in a row mark a model `failed` and fail its queued tasks.
    public var maxStartFailures = 3
    /// The longest a task of a model waits for a slot held by another model before that model yields
    /// (`scheduler.fairnessSeconds`).
    public var fairnessWaitSeconds: Double = 60
    /// How many seconds of waiting one priority level is worth.
    public var prioritySeconds: Double = 60
    /// How often a busy worker is pinged, and the timeout of each ping.
    public var livenessSeconds: Double = 10
    /// Failed pings in a row after which a busy worker is deemed hung and killed.
    public var livenessFailures = 3
    /// Settings of every pool, unless a pool's own settings say otherwise (`scheduler.pool`). All fields are set.
    public var poolDefaults = builtInPoolDefaults
    /// GPUs described by configuration; when empty, `nvidia-smi` is asked.
    public var gpus: [GPU] = []
    /// Workers at once when the box has no GPU.
    public var cpuSlots = 4
    /// Remote A1111-compatible servers that join the pools (`workers.remote`). Set at start.
    public var remoteWorkers: [RemoteWorkerSettings] = []
    /// System RAM parked workers may take together (`scheduler.hostMemoryMiB`): an idle worker whose GPU
    /// memory is needed is parked (its checkpoint moved to RAM, its process kept) within it, and stopped
    /// past it. 0 turns parking off. By default half the box's RAM (``boxMemoryMiB``).
    public var hostMemoryMiB = SchedulerConfiguration.boxMemoryMiB / 2
    /// Bytes of queued models' checkpoints read into the page cache before their workers start
    /// (`scheduler.readAheadMiB`); a starting worker's checkpoint is always read ahead. By default a
    /// quarter of the box's RAM.
    public var readAheadMiB = SchedulerConfiguration.boxMemoryMiB / 4
    /// Named ways to start workers; pools choose one by name (`PoolSettings.profile`). Set at start.
    public var profiles: [String: WorkerLaunchProfile] = ["reference": .reference()]
    /// The profile of pools that name none. Set at start.
    public var defaultProfile = "reference"
    /// The data folder: models in `models/` (A1111's layout), pid files in `run/`, worker logs in `logs/`.
    /// Set at start.
    public var dataDirectory = ""
    /// The sdbox executable, for the reference worker's `{sdbox}` placeholder. Set at start.
    public var executablePath = ""

    /// The built-in pool defaults.
    public static let builtInPoolDefaults = PoolSettings(
        minInstances: 0, maxInstances: 1, idleTimeoutSeconds: 600, gpuMemoryMiB: 8192, taskTimeoutSeconds: 3600,
        environment: [:], extraArgs: []
    )

    public init(
        maxInstances: Int = 2, maxAttempts: Int = 2, maxStartFailures: Int = 3, fairnessWaitSeconds: Double = 60,
        prioritySeconds: Double = 60, livenessSeconds: Double = 10, livenessFailures: Int = 3, poolDefaults: PoolSettings = builtInPoolDefaults,
        profiles: [String: WorkerLaunchProfile] = ["reference": .reference()], defaultProfile: String = "reference",
        gpus: [GPU] = [], cpuSlots: Int = 4, hostMemoryMiB: Int = SchedulerConfiguration.boxMemoryMiB / 2,
        readAheadMiB: Int = SchedulerConfiguration.boxMemoryMiB / 4, dataDirectory: String = "", executablePath: String = ""
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
        self.hostMemoryMiB = hostMemoryMiB
        self.readAheadMiB = readAheadMiB
        self.dataDirectory = dataDirectory
        self.executablePath = executablePath
    }

    /// The box's RAM (`MemTotal` in `/proc/meminfo`), 0 when it cannot be read. Half of it is left for
    /// sdbox, the workers' own memory and the page cache by default.
    public static let boxMemoryMiB: Int = {
        guard let meminfo = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
            let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
            let kibibytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { return 0 }
        return kibibytes / 1024
    }()

    /// The folder a fleet's boxes share (`sharedDir`), if any: the models are there.
    public var sharedDirectory: String?
    /// Whether the task queue is the fleet's (PostgreSQL): then the scheduler queues only the tasks this
    /// box claims, and leaves the unfinished tasks it finds at start to the fleet's claims.
    public var sharedQueue = false
    /// The models root, in A1111's layout (`Stable-diffusion/`, ...).
    public var modelsDirectory: String { (sharedDirectory ?? dataDirectory) + "/models" }
    /// Where workers' pid files live.
    public var runDirectory: String { dataDirectory + "/run" }
    /// Where workers' output is logged.
    public var logDirectory: String { dataDirectory + "/logs" }

    /// A pool's settings with every field decided: its own over the defaults.
    public func effectiveSettings(_ own: PoolSettings) -> PoolSettings {
        own.merged(over: poolDefaults)
    }

    /// What the planner needs of a pool's settings.
    public func policy(_ own: PoolSettings) -> PoolPolicy {
        let settings = effectiveSettings(own)
        return PoolPolicy(
            minInstances: settings.minInstances ?? 0, maxInstances: max(1, settings.maxInstances ?? 1),
            idleTimeout: TimeInterval(settings.idleTimeoutSeconds ?? 600), gpuMemoryMiB: settings.gpuMemoryMiB ?? 0,
            hostMemoryMiB: settings.hostMemoryMiB
        )
    }
}

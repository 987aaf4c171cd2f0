/// Settings of one worker pool (a "function"): how many workers it may run, when idle ones stop, how much
/// GPU memory each needs, and how they are started.
///
/// Every field is optional: a pool's stored settings override only what they set, over the defaults
/// from the configuration (``merged(over:)``).
public struct PoolSettings: Codable, Sendable, Equatable {
    /// Workers kept warm even when idle; 0 lets the pool scale to zero.
    public var minInstances: Int?
    /// The most workers this pool runs at once.
    public var maxInstances: Int?
    /// Seconds a worker may stay idle before it is stopped (down to `minInstances`).
    public var idleTimeoutSeconds: Int?
    /// GPU memory one worker needs, reserved on the GPU it is placed on.
    public var gpuMemoryMiB: Int?
    /// System RAM one worker takes while parked (its checkpoint moved off the GPU); by default its
    /// `gpuMemoryMiB`.
    public var hostMemoryMiB: Int?
    /// The longest one task may take on a worker.
    public var taskTimeoutSeconds: Int?
    /// The named launch profile (`workers.profiles`) that starts this pool's workers.
    public var profile: String?
    /// Extra environment for this pool's workers, over the profile's.
    public var environment: [String: String]?
    /// Extra arguments appended to the profile's command.
    public var extraArgs: [String]?

    public init(
        minInstances: Int? = nil, maxInstances: Int? = nil, idleTimeoutSeconds: Int? = nil, gpuMemoryMiB: Int? = nil,
        hostMemoryMiB: Int? = nil, taskTimeoutSeconds: Int? = nil, profile: String? = nil, environment: [String: String]? = nil, extraArgs: [String]? = nil
    ) {
        self.minInstances = minInstances
        self.maxInstances = maxInstances
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.gpuMemoryMiB = gpuMemoryMiB
        self.hostMemoryMiB = hostMemoryMiB
        self.taskTimeoutSeconds = taskTimeoutSeconds
        self.profile = profile
        self.environment = environment
        self.extraArgs = extraArgs
    }

    /// These settings where set, else `defaults`' (environments are merged, these winning).
    public func merged(over defaults: PoolSettings) -> PoolSettings {
        PoolSettings(
            minInstances: minInstances ?? defaults.minInstances,
            maxInstances: maxInstances ?? defaults.maxInstances,
            idleTimeoutSeconds: idleTimeoutSeconds ?? defaults.idleTimeoutSeconds,
            gpuMemoryMiB: gpuMemoryMiB ?? defaults.gpuMemoryMiB,
            hostMemoryMiB: hostMemoryMiB ?? defaults.hostMemoryMiB,
            taskTimeoutSeconds: taskTimeoutSeconds ?? defaults.taskTimeoutSeconds,
            profile: profile ?? defaults.profile,
            environment: (defaults.environment ?? [:]).merging(environment ?? [:]) { _, own in own },
            extraArgs: extraArgs ?? defaults.extraArgs
        )
    }
}

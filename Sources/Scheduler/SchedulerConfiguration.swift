/// Settings of the ``Scheduler``.
public struct SchedulerConfiguration: Sendable {
    /// The most worker processes alive at once, over all models.
    public var maxInstances: Int
    /// How many times a task is handed to a worker before a crash fails it for good.
    public var maxAttempts: Int
    /// How many failed starts in a row fail a model's queued tasks.
    public var maxStartFailures: Int
    /// The longest a worker may take over one task.
    public var taskTimeoutSeconds: Int64
    public var launch: WorkerLaunchProfile
    /// The models root, in A1111's layout (`Stable-diffusion/`, ...).
    public var modelsDirectory: String
    /// Where workers' pid files live.
    public var runDirectory: String
    /// Where workers' output is logged.
    public var logDirectory: String
    public var dataDirectory: String
    /// The sdbox executable, for the reference worker's `{sdbox}` placeholder.
    public var executablePath: String

    public init(
        maxInstances: Int = 2, maxAttempts: Int = 3, maxStartFailures: Int = 3, taskTimeoutSeconds: Int64 = 3600,
        launch: WorkerLaunchProfile, dataDirectory: String, executablePath: String
    ) {
        self.maxInstances = maxInstances
        self.maxAttempts = maxAttempts
        self.maxStartFailures = maxStartFailures
        self.taskTimeoutSeconds = taskTimeoutSeconds
        self.launch = launch
        self.dataDirectory = dataDirectory
        self.modelsDirectory = dataDirectory + "/models"
        self.runDirectory = dataDirectory + "/run"
        self.logDirectory = dataDirectory + "/logs"
        self.executablePath = executablePath
    }
}

import SDBoxCore
import Scheduler

/// How workers are started (`workers`): the default launch profile, further named ones, which one pools
/// use, and the reference worker's pace.
public struct WorkerSettings: Sendable, Equatable {
    /// The reference worker's pace: milliseconds per step at 512x512, the floor per step, extra load time,
    /// process start before loading, and the time a parked checkpoint takes to come back.
    public struct ReferencePace: Sendable, Equatable {
        public var stepMilliseconds = 50
        public var minimumStepMilliseconds = 5
        public var loadMilliseconds = 0
        public var startMilliseconds = 0
        public var reloadMilliseconds = 0

        public init() {}
    }

    /// The default launch profile (`workers.launch`); the reference worker when not configured.
    public var launch: WorkerLaunchProfile?
    /// Further named launch profiles (`workers.profiles`), chosen per pool.
    public var profiles: [String: WorkerLaunchProfile] = [:]
    /// The profile of pools that name none (`workers.defaultProfile`).
    public var defaultProfile: String?
    /// `workers.reference`.
    public var reference = ReferencePace()
    /// A1111-compatible servers on other machines that join the pools (`workers.remote`).
    public var remote: [RemoteWorkerSettings] = []

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        if var launch = try section.section("launch") {
            self.launch = try launch.launchProfile()
        }
        if var profiles = try section.section("profiles") {
            for name in profiles.fields.keys.sorted() {
                guard var profile = try profiles.section(name) else { continue }
                self.profiles[name] = try profile.launchProfile()
            }
        }
        defaultProfile = try section.string("defaultProfile") ?? defaultProfile
        if var pace = try section.section("reference") {
            reference.stepMilliseconds = try pace.integer("stepMilliseconds", in: 0...60000) ?? reference.stepMilliseconds
            reference.minimumStepMilliseconds = try pace.integer("minimumStepMilliseconds", in: 0...60000) ?? reference.minimumStepMilliseconds
            reference.loadMilliseconds = try pace.integer("loadMilliseconds", in: 0...3_600_000) ?? reference.loadMilliseconds
            reference.startMilliseconds = try pace.integer("startMilliseconds", in: 0...3_600_000) ?? reference.startMilliseconds
            reference.reloadMilliseconds = try pace.integer("reloadMilliseconds", in: 0...3_600_000) ?? reference.reloadMilliseconds
            try pace.finish()
        }
        for var entry in try section.sectionList("remote") ?? [] {
            let settings = RemoteWorkerSettings(
                name: try entry.string("name") ?? "remote-\(remote.count + 1)",
                url: try entry.string("url") ?? { throw ConfigurationError("\(entry.name("url")): required") }(),
                gpuMemoryMiB: try entry.integer("gpuMemoryMiB", in: 0...(1 << 24)),
                models: try entry.stringArray("models"),
                headers: try entry.stringMap("headers") ?? [:],
                basicAuth: try entry.string("basicAuth"),
                maxTasks: try entry.integer("maxTasks", in: 1...16),
                switchModels: try entry.boolean("switchModels") ?? false
            )
            if let problem = settings.problem { throw ConfigurationError("\(entry.path): \(problem)") }
            if remote.contains(where: { $0.name == settings.name }) { throw ConfigurationError("\(entry.name("name")): '\(settings.name)' is used twice") }
            try entry.finish()
            remote.append(settings)
        }
        try section.finish()
    }

    /// Every launch profile by name: `reference` and `sdcpp` (always, unless `workers.profiles` redefines
    /// them), `default` (from `workers.launch`) and `workers.profiles`.
    public var launchProfiles: [String: WorkerLaunchProfile] {
        var all = profiles
        all["sdcpp"] = all["sdcpp"] ?? .sdcpp
        all["reference"] = all["reference"] ?? .reference(
            stepMilliseconds: reference.stepMilliseconds, minimumStepMilliseconds: reference.minimumStepMilliseconds,
            loadMilliseconds: reference.loadMilliseconds, startMilliseconds: reference.startMilliseconds,
            reloadMilliseconds: reference.reloadMilliseconds
        )
        if let launch { all["default"] = launch }
        return all
    }

    /// The name of the profile used by pools that name none.
    public var defaultProfileName: String {
        defaultProfile ?? (launch != nil ? "default" : "reference")
    }

    /// Whether workers are sdbox's own reference workers unless a pool says otherwise.
    public var usesReferenceWorker: Bool {
        launchProfiles[defaultProfileName]?.isReferenceWorker ?? false
    }
}

import Foundation
import SDBoxCore
import Scheduler
import Yams

/// A configuration file that could not be used; names the key at fault.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Everything `sdbox serve` can be told, from its YAML file (`--config`) and its flags (which win).
///
/// Every key is optional; a missing key keeps its default. Unknown keys are refused with their name, so a
/// typo does not silently keep a default. See `docs/configuration.md` for each key.
public struct ServerConfiguration: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 7860
    public var dataDirectory = "./sdbox-data"
    /// Base of the URLs handed out in `ossUrl` (e.g. `https://sd.example.com`); by default the
    /// request's own `Host`.
    public var publicURL: String?
    /// Largest request body, in bytes (model uploads have their own limit).
    public var maxBodyBytes = 64 << 20
    /// Seconds a connection may send nothing (a stalled or trickling request) before it is closed
    /// (`requestIdleTimeoutSeconds`).
    public var requestIdleTimeoutSeconds = 60
    /// Whether every request needs an API key (`auth.required`, `--require-api-keys`). Off is allowed only
    /// when listening on loopback.
    public var requireAPIKeys = false
    /// Requests a minute per API key; 0 for no limit (`limits.requestsPerMinute`).
    public var requestsPerMinute = 0
    /// Tasks a user may have queued or running at once (`limits.maxQueuedPerUser`).
    public var maxQueuedPerUser = 1000
    /// Bytes the requests of one user's queued and running tasks may take in storage
    /// (`limits.maxQueuedBytesPerUser`).
    public var maxQueuedBytesPerUser = 256 << 20
    /// Deadlines and caps for client connections (`connections`).
    public var connections = ConnectionLimits()
    /// Pixels one request may ask for: width × height × batch_size × n_iter (`limits.maxPixels`).
    public var maxPixels = 64 << 20
    /// Largest model file accepted by upload (`models.maxUploadBytes`).
    public var maxUploadBytes: Int64 = 64 << 30
    public var limits = GenerationLimits()
    /// Lifetime of signed object URLs.
    public var urlExpirySeconds = 3600
    /// The folder of the admin web pages; by default the packaged `/usr/share/sdbox/web`, else `web/`
    /// of the source package or of the current directory.
    public var webRoot: String?
    /// Input limits, thumbnails, retention and post-processing (`images`).
    public var images = ImageSettings()
    /// Worker processes alive at once over all pools (`scheduler.maxInstances`, `--max-instances`).
    public var maxInstances = 2
    public var maxAttempts = 2
    public var maxStartFailures = 3
    public var fairnessSeconds = 60
    public var prioritySeconds = 60
    /// Seconds between liveness pings of a busy worker (`scheduler.livenessSeconds`).
    public var livenessSeconds = 10
    /// Failed pings in a row that mark a busy worker hung (`scheduler.livenessFailures`).
    public var livenessFailures = 3
    public var cpuSlots = 4
    /// GPUs described by configuration; when empty, `nvidia-smi` is asked.
    public var gpus: [GPU] = []
    /// Settings of every pool unless its own say otherwise (`scheduler.pool`).
    public var poolDefaults = SchedulerConfiguration.builtInPoolDefaults
    /// The default launch profile (`workers.launch`); the reference worker when not configured.
    public var launch: WorkerLaunchProfile?
    /// Further named launch profiles (`workers.profiles`), chosen per pool.
    public var profiles: [String: WorkerLaunchProfile] = [:]
    /// The profile of pools that name none (`workers.defaultProfile`).
    public var defaultProfile: String?
    /// Pace of the reference worker: milliseconds per step at 512x512, the floor per step, and extra load time.
    public var referenceStepMilliseconds = 50
    public var referenceMinimumStepMilliseconds = 5
    public var referenceLoadMilliseconds = 0
    /// Path prefixes of worker extensions' APIs forwarded to workers as they come (`passthrough.prefixes`),
    /// besides every `/sdapi/v1` endpoint sdbox does not answer itself.
    public var passthroughPrefixes = ["/controlnet"]
    /// Webhook settings (`webhooks`).
    public var webhooks = WebhookSettings()
    /// How often live progress streams look at their tasks (`events.intervalMilliseconds`).
    public var eventIntervalMilliseconds = 250

    public init() {}

    /// Refuses settings that are unsafe together: serving without API keys beyond loopback.
    public func checkSafety() throws {
        let loopback = ["127.0.0.1", "::1", "localhost"].contains(host) || host.hasPrefix("127.")
        if !requireAPIKeys && !loopback {
            throw ConfigurationError("auth.required: API keys must be required when listening on \(host) (not loopback); set auth.required: true or --require-api-keys, and make a key with `sdbox keys add`")
        }
    }

    /// Every launch profile by name: `reference` and `sdcpp` (always, unless `workers.profiles` redefines
    /// them), `default` (from `workers.launch`) and `workers.profiles`.
    public var launchProfiles: [String: WorkerLaunchProfile] {
        var all = profiles
        all["sdcpp"] = all["sdcpp"] ?? .sdcpp
        all["reference"] = all["reference"] ?? .reference(
            stepMilliseconds: referenceStepMilliseconds, minimumStepMilliseconds: referenceMinimumStepMilliseconds,
            loadMilliseconds: referenceLoadMilliseconds
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

    /// Reads a YAML configuration file over the defaults.
    public static func load(yaml text: String) throws -> ServerConfiguration {
        let document: JSONValue
        do {
            document = try YAMLDecoder().decode(JSONValue.self, from: text.isEmpty ? "{}" : text)
        } catch {
            throw ConfigurationError("configuration is not valid YAML: \(error)")
        }
        return try ServerConfiguration().applying(document)
    }

    /// Environment variables that override configuration keys, and the key each sets.
    public static let environmentKeys: [(variable: String, path: [String])] = [
        ("SDBOX_HOST", ["host"]), ("SDBOX_PORT", ["port"]), ("SDBOX_DATA_DIR", ["dataDir"]), ("SDBOX_PUBLIC_URL", ["publicURL"]),
        ("SDBOX_MAX_BODY_BYTES", ["maxBodyBytes"]), ("SDBOX_URL_EXPIRY_SECONDS", ["urlExpirySeconds"]),
        ("SDBOX_MAX_UPLOAD_BYTES", ["models", "maxUploadBytes"]), ("SDBOX_MAX_INSTANCES", ["scheduler", "maxInstances"]),
        ("SDBOX_CPU_SLOTS", ["scheduler", "cpuSlots"]), ("SDBOX_REQUIRE_API_KEYS", ["auth", "required"]),
        ("SDBOX_DEFAULT_PROFILE", ["workers", "defaultProfile"]),
    ]

    /// This configuration with the `SDBOX_*` variables of `environment` applied over it (they win over
    /// the file; command-line flags win over them). Errors name the variable.
    public func applyingEnvironment(_ environment: [String: String]) throws -> ServerConfiguration {
        var config = self
        for (variable, path) in Self.environmentKeys {
            guard let value = environment[variable] else { continue }
            var document = JSONValue.string(value)
            for key in path.reversed() { document = .object([key: document]) }
            do {
                config = try config.applying(document)
            } catch let error as ConfigurationError {
                throw ConfigurationError("\(variable): \(error.description)")
            }
        }
        return config
    }

    /// This configuration with the keys of a configuration document set over it.
    func applying(_ document: JSONValue) throws -> ServerConfiguration {
        var config = self
        if document.isNull { return config }
        guard let root = document.objectValue else { throw ConfigurationError("configuration must be a mapping of keys") }
        var reader = KeyReader(path: "", fields: root)
        config.host = try reader.string("host") ?? config.host
        config.port = try reader.integer("port", in: 0...65535) ?? config.port
        config.dataDirectory = try reader.string("dataDir") ?? config.dataDirectory
        config.publicURL = try reader.string("publicURL") ?? config.publicURL
        config.maxBodyBytes = try reader.integer("maxBodyBytes", in: 1024...(1 << 40)) ?? config.maxBodyBytes
        config.urlExpirySeconds = try reader.integer("urlExpirySeconds", in: 1...(366 * 86400)) ?? config.urlExpirySeconds
        config.requestIdleTimeoutSeconds = try reader.integer("requestIdleTimeoutSeconds", in: 1...3600) ?? config.requestIdleTimeoutSeconds
        config.webRoot = try reader.string("webRoot")
        if var limits = try reader.section("limits") {
            config.limits.maxSteps = try limits.integer("maxSteps", in: 1...10000) ?? config.limits.maxSteps
            config.limits.maxSide = try limits.integer("maxSide", in: 64...65536) ?? config.limits.maxSide
            config.limits.maxImages = try limits.integer("maxImages", in: 1...1000) ?? config.limits.maxImages
            config.requestsPerMinute = try limits.integer("requestsPerMinute", in: 0...1_000_000) ?? config.requestsPerMinute
            config.maxQueuedPerUser = try limits.integer("maxQueuedPerUser", in: 1...1_000_000) ?? config.maxQueuedPerUser
            config.maxQueuedBytesPerUser = try limits.integer("maxQueuedBytesPerUser", in: 1 << 20...(1 << 40)) ?? config.maxQueuedBytesPerUser
            config.limits.maxPromptBytes = try limits.integer("maxPromptBytes", in: 1024...(64 << 20)) ?? config.limits.maxPromptBytes
            config.maxPixels = try limits.integer("maxPixels", in: 4096...(1 << 40)) ?? config.maxPixels
            try limits.finish()
        }
        if var connections = try reader.section("connections") {
            config.connections.headerTimeoutSeconds = try connections.integer("headerTimeoutSeconds", in: 1...3600) ?? config.connections.headerTimeoutSeconds
            config.connections.bodyTimeoutSeconds = try connections.integer("bodyTimeoutSeconds", in: 1...3600) ?? config.connections.bodyTimeoutSeconds
            config.connections.minBodyBytesPerSecond = try connections.integer("minBodyBytesPerSecond", in: 1...(1 << 30)) ?? config.connections.minBodyBytesPerSecond
            config.connections.maxConnections = try connections.integer("maxConnections", in: 1...1_000_000) ?? config.connections.maxConnections
            config.connections.maxConnectionsPerAddress = try connections.integer("maxConnectionsPerAddress", in: 1...1_000_000) ?? config.connections.maxConnectionsPerAddress
            try connections.finish()
        }
        if var auth = try reader.section("auth") {
            config.requireAPIKeys = try auth.boolean("required") ?? config.requireAPIKeys
            try auth.finish()
        }
        if var models = try reader.section("models") {
            config.maxUploadBytes = Int64(try models.integer("maxUploadBytes", in: 1024...(1 << 50)) ?? Int(config.maxUploadBytes))
            try models.finish()
        }
        if var images = try reader.section("images") {
            try config.images.read(&images)
        }
        if var scheduler = try reader.section("scheduler") {
            config.maxInstances = try scheduler.integer("maxInstances", in: 1...1024) ?? config.maxInstances
            config.maxAttempts = try scheduler.integer("maxAttempts", in: 1...100) ?? config.maxAttempts
            config.maxStartFailures = try scheduler.integer("maxStartFailures", in: 1...100) ?? config.maxStartFailures
            config.fairnessSeconds = try scheduler.integer("fairnessSeconds", in: 0...86400) ?? config.fairnessSeconds
            config.prioritySeconds = try scheduler.integer("prioritySeconds", in: 0...86400) ?? config.prioritySeconds
            config.livenessSeconds = try scheduler.integer("livenessSeconds", in: 1...3600) ?? config.livenessSeconds
            config.livenessFailures = try scheduler.integer("livenessFailures", in: 1...100) ?? config.livenessFailures
            config.cpuSlots = try scheduler.integer("cpuSlots", in: 1...1024) ?? config.cpuSlots
            for var gpu in try scheduler.sectionList("gpus") ?? [] {
                config.gpus.append(
                    GPU(
                        index: try gpu.integer("index", in: 0...255) ?? config.gpus.count,
                        name: try gpu.string("name") ?? "GPU",
                        memoryMiB: try gpu.integer("memoryMiB", in: 1...(1 << 24)) ?? { throw ConfigurationError("\(gpu.name("memoryMiB")): required") }()
                    )
                )
                try gpu.finish()
            }
            if var pool = try scheduler.section("pool") {
                config.poolDefaults = try pool.poolSettings().merged(over: config.poolDefaults)
                try pool.finish()
            }
            try scheduler.finish()
        }
        if var workers = try reader.section("workers") {
            if var launch = try workers.section("launch") {
                config.launch = try launch.launchProfile()
            }
            if var profiles = try workers.section("profiles") {
                for name in profiles.fields.keys.sorted() {
                    guard var profile = try profiles.section(name) else { continue }
                    config.profiles[name] = try profile.launchProfile()
                }
            }
            config.defaultProfile = try workers.string("defaultProfile") ?? config.defaultProfile
            if var reference = try workers.section("reference") {
                config.referenceStepMilliseconds = try reference.integer("stepMilliseconds", in: 0...60000) ?? config.referenceStepMilliseconds
                config.referenceMinimumStepMilliseconds = try reference.integer("minimumStepMilliseconds", in: 0...60000) ?? config.referenceMinimumStepMilliseconds
                config.referenceLoadMilliseconds = try reference.integer("loadMilliseconds", in: 0...3_600_000) ?? config.referenceLoadMilliseconds
                try reference.finish()
            }
            try workers.finish()
        }
        if var passthrough = try reader.section("passthrough") {
            if let prefixes = try passthrough.stringArray("prefixes") {
                config.passthroughPrefixes = try prefixes.map { try PassthroughPrefix.validate($0, key: passthrough.name("prefixes")) }
            }
            try passthrough.finish()
        }
        if var webhooks = try reader.section("webhooks") {
            config.webhooks.secret = try webhooks.string("secret") ?? config.webhooks.secret
            config.webhooks.maxAttempts = try webhooks.integer("maxAttempts", in: 1...100) ?? config.webhooks.maxAttempts
            config.webhooks.retrySeconds = try webhooks.integer("retrySeconds", in: 1...3600) ?? config.webhooks.retrySeconds
            config.webhooks.maxRetrySeconds = try webhooks.integer("maxRetrySeconds", in: 1...86400) ?? config.webhooks.maxRetrySeconds
            config.webhooks.timeoutSeconds = try webhooks.integer("timeoutSeconds", in: 1...600) ?? config.webhooks.timeoutSeconds
            config.webhooks.allowPrivateNetworks = try webhooks.boolean("allowPrivateNetworks") ?? config.webhooks.allowPrivateNetworks
            try webhooks.finish()
        }
        if var events = try reader.section("events") {
            config.eventIntervalMilliseconds = try events.integer("intervalMilliseconds", in: 10...60000) ?? config.eventIntervalMilliseconds
            try events.finish()
        }
        if let name = config.defaultProfile, config.launchProfiles[name] == nil {
            throw ConfigurationError("workers.defaultProfile: no profile named '\(name)'")
        }
        if let name = config.poolDefaults.profile, config.launchProfiles[name] == nil {
            throw ConfigurationError("scheduler.pool.profile: no profile named '\(name)'")
        }
        try reader.finish()
        return config
    }
}

/// Reads typed keys from one mapping of a configuration document, remembering which keys it used so
/// that ``finish()`` can refuse the rest.
struct KeyReader {
    let path: String
    var fields: [String: JSONValue]

    func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    mutating func take(_ key: String) -> JSONValue? {
        guard let value = fields.removeValue(forKey: key), !value.isNull else { return nil }
        return value
    }

    mutating func string(_ key: String) throws -> String? {
        guard let value = take(key) else { return nil }
        switch value {
        case .string(let text): return text
        case .integer(let number): return String(number)
        default: throw ConfigurationError("\(name(key)): a string is required")
        }
    }

    mutating func boolean(_ key: String) throws -> Bool? {
        guard let value = take(key) else { return nil }
        switch value {
        case .bool(let flag): return flag
        case .string(let text) where ["true", "1", "yes"].contains(text.lowercased()): return true
        case .string(let text) where ["false", "0", "no"].contains(text.lowercased()): return false
        default: throw ConfigurationError("\(name(key)): true or false is required")
        }
    }

    mutating func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let value = take(key) else { return nil }
        guard let number = value.integerValue ?? value.stringValue.flatMap({ Int64($0) }), range.contains(Int(clamping: number)) else {
            throw ConfigurationError("\(name(key)): an integer from \(range.lowerBound) to \(range.upperBound) is required")
        }
        return Int(number)
    }

    mutating func stringArray(_ key: String) throws -> [String]? {
        guard let value = take(key) else { return nil }
        guard let items = value.arrayValue?.map({ $0.stringValue ?? $0.integerValue.map(String.init) }), !items.contains(nil) else {
            throw ConfigurationError("\(name(key)): a list of strings is required")
        }
        return items.compactMap { $0 }
    }

    mutating func stringMap(_ key: String) throws -> [String: String]? {
        guard let value = take(key) else { return nil }
        guard let object = value.objectValue else { throw ConfigurationError("\(name(key)): a mapping of strings is required") }
        return try object.mapValues { item in
            guard let text = item.stringValue ?? item.integerValue.map(String.init) else {
                throw ConfigurationError("\(name(key)): a mapping of strings is required")
            }
            return text
        }
    }

    mutating func sectionList(_ key: String) throws -> [KeyReader]? {
        guard let value = take(key) else { return nil }
        guard let items = value.arrayValue else { throw ConfigurationError("\(name(key)): a list is required") }
        return try items.enumerated().map { index, item in
            guard let object = item.objectValue else { throw ConfigurationError("\(name(key))[\(index)]: a mapping is required") }
            return KeyReader(path: "\(name(key))[\(index)]", fields: object)
        }
    }

    /// Reads a launch profile's keys and refuses any other.
    mutating func launchProfile() throws -> WorkerLaunchProfile {
        guard let command = try stringArray("command"), !command.isEmpty else {
            throw ConfigurationError("\(name("command")): a non-empty list of strings is required")
        }
        let profile = WorkerLaunchProfile(
            command: command,
            workingDirectory: try string("workingDirectory"),
            environment: try stringMap("environment") ?? [:],
            startupTimeoutSeconds: Double(try integer("startupTimeoutSeconds", in: 1...86400) ?? 600)
        )
        try finish()
        return profile
    }

    /// Reads a pool's settings (`scheduler.pool`).
    mutating func poolSettings() throws -> PoolSettings {
        PoolSettings(
            minInstances: try integer("minInstances", in: 0...1024),
            maxInstances: try integer("maxInstances", in: 1...1024),
            idleTimeoutSeconds: try integer("idleTimeoutSeconds", in: 0...(30 * 86400)),
            gpuMemoryMiB: try integer("gpuMemoryMiB", in: 0...(1 << 24)),
            taskTimeoutSeconds: try integer("taskTimeoutSeconds", in: 1...(7 * 86400)),
            profile: try string("profile"),
            environment: try stringMap("environment"),
            extraArgs: try stringArray("extraArgs")
        )
    }

    mutating func section(_ key: String) throws -> KeyReader? {
        guard let value = take(key) else { return nil }
        guard let object = value.objectValue else { throw ConfigurationError("\(name(key)): a mapping is required") }
        return KeyReader(path: name(key), fields: object)
    }

    func finish() throws {
        if let unknown = fields.keys.sorted().first {
            throw ConfigurationError("\(name(unknown)): unknown configuration key")
        }
    }
}

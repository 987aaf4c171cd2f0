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
    /// Where the database, images, models and logs live (`dataDir`).
    public var dataDirectory = "./sdbox-data"
    /// A folder every box of a fleet shares (`sharedDir`, an NFS mount): it holds the objects, the models
    /// and the secrets and styles every box must agree on, in place of those under `dataDir`.
    public var sharedDirectory: String?
    /// This box among several (`node`).
    public var node = NodeSettings()
    /// The other keys at the root: address, public URL, body limit, signed URLs' lifetime, web pages.
    public var http = HTTPSettings()
    public var auth = AuthSettings()
    public var limits = LimitSettings()
    public var connections = ConnectionLimits()
    public var models = ModelSettings()
    public var images = ImageSettings()
    /// The `scheduler` section; its launch profiles and folders are filled in at start.
    public var scheduler = SchedulerConfiguration()
    public var workers = WorkerSettings()
    public var passthrough = PassthroughSettings()
    public var webhooks = WebhookSettings()
    public var events = EventSettings()
    public var cors = CORSSettings()
    public var database = DatabaseSettings()
    /// How boxes sharing the PostgreSQL database claim tasks (`fleet`).
    public var fleet = FleetSettings()

    public init() {}

    /// Refuses settings that are unsafe together: serving without API keys beyond loopback.
    public func checkSafety() throws {
        if !auth.required && !http.isLoopback {
            throw ConfigurationError("auth.required: API keys must be required when listening on \(http.host) (not loopback); set auth.required: true or --require-api-keys, and make a key with `sdbox keys add`")
        }
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
        ("SDBOX_SHARED_DIR", ["sharedDir"]), ("SDBOX_NODE_NAME", ["node", "name"]),
        ("SDBOX_MAX_BODY_BYTES", ["maxBodyBytes"]), ("SDBOX_URL_EXPIRY_SECONDS", ["urlExpirySeconds"]),
        ("SDBOX_MAX_UPLOAD_BYTES", ["models", "maxUploadBytes"]), ("SDBOX_MAX_INSTANCES", ["scheduler", "maxInstances"]),
        ("SDBOX_CPU_SLOTS", ["scheduler", "cpuSlots"]), ("SDBOX_REQUIRE_API_KEYS", ["auth", "required"]),
        ("SDBOX_DEFAULT_PROFILE", ["workers", "defaultProfile"]), ("SDBOX_HUGGINGFACE_TOKEN", ["models", "huggingFaceToken"]),
        ("SDBOX_CIVITAI_TOKEN", ["models", "civitaiToken"]), ("SDBOX_DATABASE_URL", ["database", "url"]),
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
        config.dataDirectory = try reader.string("dataDir") ?? config.dataDirectory
        config.sharedDirectory = try reader.string("sharedDir") ?? config.sharedDirectory
        if var section = try reader.section("node") { try config.node.read(&section) }
        try config.http.read(&reader)
        if var section = try reader.section("auth") { try config.auth.read(&section) }
        if var section = try reader.section("limits") { try config.limits.read(&section) }
        if var section = try reader.section("connections") { try config.connections.read(&section) }
        if var section = try reader.section("models") { try config.models.read(&section) }
        if var section = try reader.section("images") { try config.images.read(&section) }
        if var section = try reader.section("scheduler") { try config.scheduler.read(&section) }
        if var section = try reader.section("workers") { try config.workers.read(&section) }
        if var section = try reader.section("passthrough") { try config.passthrough.read(&section) }
        if var section = try reader.section("webhooks") { try config.webhooks.read(&section) }
        if var section = try reader.section("events") { try config.events.read(&section) }
        if var section = try reader.section("cors") { try config.cors.read(&section) }
        if var section = try reader.section("database") { try config.database.read(&section) }
        if var section = try reader.section("fleet") { try config.fleet.read(&section) }
        if let name = config.workers.defaultProfile, config.workers.launchProfiles[name] == nil {
            throw ConfigurationError("workers.defaultProfile: no profile named '\(name)'")
        }
        if let name = config.scheduler.poolDefaults.profile, config.workers.launchProfiles[name] == nil {
            throw ConfigurationError("scheduler.pool.profile: no profile named '\(name)'")
        }
        try reader.finish()
        return config
    }
}

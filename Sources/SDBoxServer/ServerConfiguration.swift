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
    /// Largest request body, in bytes.
    public var maxBodyBytes = 64 << 20
    public var limits = GenerationLimits()
    /// Lifetime of signed object URLs.
    public var urlExpirySeconds = 3600
    public var maxInstances = 2
    public var maxAttempts = 3
    public var taskTimeoutSeconds: Int64 = 3600
    /// How workers are started; the reference worker when not configured.
    public var launch: WorkerLaunchProfile?
    /// Pace of the reference worker: milliseconds per step at 512x512, and the floor per step.
    public var referenceStepMilliseconds = 50
    public var referenceMinimumStepMilliseconds = 5

    public init() {}

    /// The launch profile in force.
    public var effectiveLaunch: WorkerLaunchProfile {
        launch ?? .reference(stepMilliseconds: referenceStepMilliseconds, minimumStepMilliseconds: referenceMinimumStepMilliseconds)
    }

    /// Reads a YAML configuration file over the defaults.
    public static func load(yaml text: String) throws -> ServerConfiguration {
        let document: JSONValue
        do {
            document = try YAMLDecoder().decode(JSONValue.self, from: text.isEmpty ? "{}" : text)
        } catch {
            throw ConfigurationError("configuration is not valid YAML: \(error)")
        }
        var config = ServerConfiguration()
        if document.isNull { return config }
        guard let root = document.objectValue else { throw ConfigurationError("configuration must be a mapping of keys") }
        var reader = KeyReader(path: "", fields: root)
        config.host = try reader.string("host") ?? config.host
        config.port = try reader.integer("port", in: 0...65535) ?? config.port
        config.dataDirectory = try reader.string("dataDir") ?? config.dataDirectory
        config.publicURL = try reader.string("publicURL")
        config.maxBodyBytes = try reader.integer("maxBodyBytes", in: 1024...(1 << 40)) ?? config.maxBodyBytes
        config.urlExpirySeconds = try reader.integer("urlExpirySeconds", in: 1...(366 * 86400)) ?? config.urlExpirySeconds
        if var limits = try reader.section("limits") {
            config.limits.maxSteps = try limits.integer("maxSteps", in: 1...10000) ?? config.limits.maxSteps
            config.limits.maxSide = try limits.integer("maxSide", in: 64...65536) ?? config.limits.maxSide
            config.limits.maxImages = try limits.integer("maxImages", in: 1...1000) ?? config.limits.maxImages
            try limits.finish()
        }
        if var workers = try reader.section("workers") {
            config.maxInstances = try workers.integer("maxInstances", in: 1...1024) ?? config.maxInstances
            config.maxAttempts = try workers.integer("maxAttempts", in: 1...100) ?? config.maxAttempts
            config.taskTimeoutSeconds = Int64(try workers.integer("taskTimeoutSeconds", in: 1...(7 * 86400)) ?? Int(config.taskTimeoutSeconds))
            if var launch = try workers.section("launch") {
                guard let command = try launch.stringArray("command"), !command.isEmpty else {
                    throw ConfigurationError("workers.launch.command: a non-empty list of strings is required")
                }
                config.launch = WorkerLaunchProfile(
                    command: command,
                    workingDirectory: try launch.string("workingDirectory"),
                    environment: try launch.stringMap("environment") ?? [:],
                    startupTimeoutSeconds: Double(try launch.integer("startupTimeoutSeconds", in: 1...86400) ?? 600)
                )
                try launch.finish()
            }
            if var reference = try workers.section("reference") {
                config.referenceStepMilliseconds = try reference.integer("stepMilliseconds", in: 0...60000) ?? config.referenceStepMilliseconds
                config.referenceMinimumStepMilliseconds = try reference.integer("minimumStepMilliseconds", in: 0...60000) ?? config.referenceMinimumStepMilliseconds
                try reference.finish()
            }
            try workers.finish()
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

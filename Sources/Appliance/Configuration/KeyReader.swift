import SDBoxCore
import Scheduler

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
            startupTimeoutSeconds: Double(try integer("startupTimeoutSeconds", in: 1...86400) ?? 600),
            ownsPort: try boolean("ownsPort") ?? true
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
            hostMemoryMiB: try integer("hostMemoryMiB", in: 0...(1 << 24)),
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

import Foundation
import NIOSSL
import PostgresNIO

/// Where a PostgreSQL database is, from a URL as libpq takes it:
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require][&host=/socket/folder]`.
///
/// The password may be in the URL; ``masked`` is the URL to show, with the password replaced by `***`.
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    /// How the connection uses TLS (libpq's `sslmode`).
    public enum TLSMode: String, Sendable, Equatable {
        case disable, prefer, require
    }

    public var host: String
    public var port: Int
    /// A folder holding the server's Unix socket (the `host` parameter, as libpq takes it), used instead of TCP.
    public var socketFolder: String?
    public var username: String
    public var password: String?
    public var database: String
    public var tls: TLSMode

    /// Reads a `postgres://` (or `postgresql://`) URL; the error shows it masked.
    public init(url: String) throws {
        let masked = Self.mask(url)
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme?.lowercased() ?? "") else {
            throw PostgresLocationError("\(masked) is not a postgres:// URL")
        }
        guard let user = components.user, !user.isEmpty else {
            throw PostgresLocationError("\(masked) names no user (postgres://USER@HOST/DATABASE)")
        }
        username = user.removingPercentEncoding ?? user
        password = components.password.map { $0.removingPercentEncoding ?? $0 }
        host = components.host.map { $0.removingPercentEncoding ?? $0 } ?? ""
        port = components.port ?? 5432
        let path = String(components.path.drop { $0 == "/" })
        database = path.isEmpty ? username : (path.removingPercentEncoding ?? path)
        tls = .prefer
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let mode = item.value.flatMap(TLSMode.init(rawValue:)) else {
                    throw PostgresLocationError("\(masked): sslmode must be disable, prefer or require")
                }
                tls = mode
            case "host" where item.value?.hasPrefix("/") == true:
                socketFolder = item.value
            default:
                throw PostgresLocationError("\(masked): unknown parameter '\(item.name)' (sslmode and host=/socket/folder are known)")
            }
        }
        if host.isEmpty && socketFolder == nil {
            throw PostgresLocationError("\(masked) names no host (postgres://USER@HOST/DATABASE, or ?host=/socket/folder)")
        }
    }

    /// The URL with its password replaced by `***`.
    public var masked: String {
        var text = "postgres://" + username + (password == nil ? "" : ":***") + "@" + host
        if port != 5432 { text += ":\(port)" }
        text += "/" + database
        var parameters: [String] = []
        if tls != .prefer { parameters.append("sslmode=\(tls.rawValue)") }
        if let socketFolder { parameters.append("host=\(socketFolder)") }
        return parameters.isEmpty ? text : text + "?" + parameters.joined(separator: "&")
    }

    public var description: String { masked }

    /// A URL text with anything between `//user:` and `@` replaced by `***`, for messages about a URL that
    /// could not be read.
    public static func mask(_ url: String) -> String {
        guard let scheme = url.range(of: "://"), let at = url[scheme.upperBound...].lastIndex(of: "@"),
            let colon = url[scheme.upperBound..<at].firstIndex(of: ":")
        else { return url }
        return String(url[..<url.index(after: colon)]) + "***" + String(url[at...])
    }

    /// The path of the server's socket in ``socketFolder``, named after the port as PostgreSQL names it.
    var socketPath: String? { socketFolder.map { "\($0)/.s.PGSQL.\(port)" } }

    /// The settings of one connection.
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        if let socketPath {
            return PostgresConnection.Configuration(unixSocketPath: socketPath, username: username, password: password, database: database)
        }
        let tls: PostgresConnection.Configuration.TLS =
            switch self.tls {
            case .disable: .disable
            case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
            case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
        return PostgresConnection.Configuration(host: host, port: port, username: username, password: password, database: database, tls: tls)
    }

    /// The settings of a pool of at most `maxConnections` connections.
    func clientConfiguration(maxConnections: Int) -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let socketPath {
            configuration = PostgresClient.Configuration(unixSocketPath: socketPath, username: username, password: password, database: database)
        } else {
            let tls: PostgresClient.Configuration.TLS =
                switch self.tls {
                case .disable: .disable
                case .prefer: .prefer(.makeClientConfiguration())
                case .require: .require(.makeClientConfiguration())
                }
            configuration = PostgresClient.Configuration(host: host, port: port, username: username, password: password, database: database, tls: tls)
        }
        configuration.options.maximumConnections = maxConnections
        return configuration
    }
}

/// A database URL that could not be read; its message never holds the password.
public struct PostgresLocationError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

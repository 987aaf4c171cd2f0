/// A path a client asks sdbox to forward to a worker, read as the worker reads it and judged by an
/// allow-list.
///
/// A1111 runs on FastAPI/uvicorn, which percent-decodes the path before routing: `/sdapi/v1/%6Fptions` is
/// `/sdapi/v1/options` to it. So the path is decoded once (as uvicorn does), its empty and dot segments
/// removed (`//`, `/./`, `/../`, a trailing `/`), and only that one reading is judged and sent on, encoded
/// so that the worker decodes it back to exactly what was judged. A path that cannot be read that way
/// (a bad `%` escape, bytes that are not UTF-8, control characters) is refused.
public struct WorkerPath: Equatable, Sendable {
    /// The decoded, normalised path, e.g. `/sdapi/v1/cmd-flags`.
    public let decoded: String
    /// The same path as it goes on the request line to the worker.
    public let encoded: String

    /// A1111 endpoints that sdbox forwards (the ones it does not answer itself), by method. Everything else
    /// under `/sdapi/v1` stays away from the shared workers: options, progress, model loading, the
    /// server-* controls and training are answered or refused by sdbox.
    public static let forwardedA1111: [String: Set<String>] = [
        "cmd-flags": ["GET"], "hypernetworks": ["GET"], "face-restorers": ["GET"], "realesrgan-models": ["GET"], "script-info": ["GET"],
        "extensions": ["GET"], "interrogate": ["POST"],
    ]
    /// A1111 endpoints that would stop or restart a worker behind the scheduler's back.
    public static let workerControls: Set<String> = ["server-kill", "server-restart", "server-stop"]
    /// First path segments of a worker's own internals and of its web UI (A1111's `/internal/*`, gradio's
    /// files, queue and config), which would reach past the scheduler or read the worker's files: never
    /// forwarded.
    public static let workerInternals: Set<String> = [
        "internal", "file", "run", "api", "queue", "config", "token", "startup-events", "docs", "redoc", "openapi.json", "login",
        "logout", "login_check", "heartbeat", "upload", "reset", "assets", "info", "theme.css", "user.css", "javascript",
    ]

    /// Reads `raw` (a request's path, without its query).
    public init(raw: String) throws(WorkerPathError) {
        let bytes = try Self.percentDecoded(raw)
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .notUTF8 }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { throw .controlCharacter }
        var segments: [Substring] = []
        for segment in text.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": _ = segments.popLast()
            default: segments.append(segment)
            }
        }
        decoded = "/" + segments.joined(separator: "/")
        encoded = "/" + segments.map(Self.percentEncoded).joined(separator: "/")
    }

    /// Whether sdbox forwards a call to this path, as the original forwards every path it does not answer:
    /// under `/sdapi/`, an A1111 endpoint of ``forwardedA1111`` with its method; elsewhere any path whose
    /// first segment is neither sdbox's own (`reserved`) nor a worker's internals (``isWorkerInternal``).
    ///
    /// - Parameter method: The HTTP method, e.g. `GET`.
    public func isForwarded(method: String, reserved: Set<String>) -> Bool {
        guard let first = firstSegment else { return false }
        if first == "sdapi" { return isForwardedA1111(method: method) }
        return !reserved.contains(first) && !isWorkerInternal
    }

    /// The first segment of the path, e.g. `controlnet`; nil for `/`.
    public var firstSegment: String? {
        decoded.split(separator: "/").first.map(String.init)
    }

    /// Whether the path is one of a worker's internals or of its web UI (see ``workerInternals``).
    public var isWorkerInternal: Bool {
        guard let first = firstSegment else { return false }
        return Self.workerInternals.contains(first) || first.hasPrefix("file=")
    }

    /// Whether this is an A1111 endpoint sdbox forwards with `method`.
    public func isForwardedA1111(method: String) -> Bool {
        guard let endpoint = a1111Endpoint else { return false }
        return Self.forwardedA1111[endpoint]?.contains(method) ?? false
    }

    /// The endpoint under `/sdapi/v1/`, e.g. `server-kill`; nil for other paths.
    public var a1111Endpoint: String? {
        let prefix = "/sdapi/v1/"
        return decoded.hasPrefix(prefix) ? String(decoded.dropFirst(prefix.count)) : nil
    }

    static func percentDecoded(_ raw: String) throws(WorkerPathError) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(raw.utf8.count)
        var iterator = raw.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue) else {
                throw .badEscape
            }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// A segment with everything but RFC 3986's unreserved characters and sub-delimiters escaped.
    static func percentEncoded(_ segment: Substring) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in segment.utf8 {
            let plain = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || "-._~!$&'()*+,;=:@".utf8.contains(byte)
            if plain {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Why a path cannot be forwarded as it was written.
public enum WorkerPathError: Error, Sendable, CustomStringConvertible {
    case badEscape
    case notUTF8
    case controlCharacter
    /// A call stored by an older sdbox whose path is not one sdbox forwards now.
    case notForwarded(String)

    public var description: String {
        switch self {
        case .badEscape: "a '%' is not followed by two hexadecimal digits"
        case .notUTF8: "the decoded path is not UTF-8"
        case .controlCharacter: "the decoded path holds a control character"
        case .notForwarded(let path): "\(path) is not an endpoint sdbox forwards to workers"
        }
    }
}

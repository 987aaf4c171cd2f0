/// A path prefix of a worker extension's API (`passthrough.prefixes`), e.g. `/controlnet`.
package enum PassthroughPrefix {
    /// Top-level path segments of sdbox's own API, which no prefix may take over.
    package static let reserved: Set<String> = [
        "sdapi", "tasks", "txt2img", "img2img", "models", "admin", "objects", "web", "ws", "healthz", "readyz",
        "metrics", "list", "batch_update_sd_resource", "del", "workers", "options", "login", "restart", "extra_images",
        "openapi.json", "favicon.svg",
    ]

    /// The prefix without a trailing slash, or an error naming `key` when it is not a plain path
    /// (`/name` or `/name/more`) or would shadow sdbox's own routes.
    static func validate(_ prefix: String, key: String) throws -> String {
        let trimmed = prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
        let segments = trimmed.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard trimmed.hasPrefix("/"), !segments.isEmpty,
            segments.allSatisfy({ segment in
                !segment.isEmpty && segment != "." && segment != ".."
                    && segment.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.~".contains($0)) }
            })
        else {
            throw ConfigurationError("\(key): '\(prefix)' must be a path such as /controlnet (letters, digits, - _ . ~)")
        }
        if let first = segments.first, reserved.contains(String(first)) {
            throw ConfigurationError("\(key): '\(prefix)' would take over sdbox's own /\(first) routes")
        }
        return trimmed
    }
}

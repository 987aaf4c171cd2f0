/// Worker extensions' APIs forwarded to workers as they come (`passthrough`).
public struct PassthroughSettings: Sendable, Equatable {
    /// Path prefixes of extension APIs (`passthrough.prefixes`), still read and checked so that configurations
    /// written for older sdbox start; every path that is not sdbox's own is forwarded now, so they change
    /// nothing.
    public var prefixes = ["/controlnet"]

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        if let prefixes = try section.stringArray("prefixes") {
            let key = section.name("prefixes")
            self.prefixes = try prefixes.map { try PassthroughPrefix.validate($0, key: key) }
        }
        try section.finish()
    }
}

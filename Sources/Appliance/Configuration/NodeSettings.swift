import Foundation

/// This box among several that share a database and a folder (`node`).
public struct NodeSettings: Sendable, Equatable {
    /// The box's name in reports (`node.name`, env `SDBOX_NODE_NAME`); by default the host name.
    public var name = ProcessInfo.processInfo.hostName

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        name = try section.string("name") ?? name
        try section.finish()
    }
}

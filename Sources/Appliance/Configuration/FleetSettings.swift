/// How the boxes sharing one PostgreSQL database work as one (`fleet`).
public struct FleetSettings: Sendable, Equatable {
    /// How long a box's claim on a task lasts without renewal (`fleet.claimSeconds`): a box renews its
    /// claims and its heartbeat every third of it, and once a claim expires (the box was killed, or cut
    /// off) another box takes the task again. A box counts as live for as long after its last heartbeat.
    public var claimSeconds = 30

    public init() {}

    /// How often a box renews its claims and heartbeat.
    public var renewSeconds: Double { Double(claimSeconds) / 3 }

    mutating func read(_ section: inout KeyReader) throws {
        claimSeconds = try section.integer("claimSeconds", in: 3...3600) ?? claimSeconds
        try section.finish()
    }
}

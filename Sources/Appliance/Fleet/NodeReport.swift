import Foundation
import Scheduler

/// What a box of a fleet tells the others about itself with each heartbeat (kept in its `sdbox_nodes`
/// row): its GPUs and workers, as its own `GET /workers` shows them, for every box's `GET /workers` and
/// for the pools' caps across the fleet.
public struct NodeReport: Codable, Sendable, Equatable {
    public var workers: [WorkerInfo]
    public var gpus: [GPUUsage]
    public var maxInstances: Int
    /// Tasks queued on the box (claimed, not started), per model.
    public var queues: [String: Int]
}

/// A box of the fleet, as every box lists it (`GET /workers`, `nodes`).
public struct FleetNode: Encodable, Sendable, Equatable {
    public var name: String
    public var startedAt: Date
    /// Its last heartbeat.
    public var heartbeatAt: Date
    /// Whether it renewed its heartbeat within `fleet.claimSeconds`; a box that stopped answering is
    /// listed, not live, until it restarts or stops cleanly.
    public var live: Bool
    /// Its last report; nil before its first heartbeat.
    public var report: NodeReport?
}

import Foundation
import SDBoxCore

/// What a worker is doing, as the scheduler sees it.
public enum WorkerState: String, Codable, Sendable, CaseIterable {
    /// Started; loading its checkpoint.
    case starting
    /// Ready and idle.
    case ready
    /// Running a task.
    case busy
    /// Moving its checkpoint from the GPU to system RAM (A1111's `/sdapi/v1/unload-checkpoint`).
    case parking
    /// Parked: the process lives with its checkpoint in system RAM, holding no GPU memory.
    case parked
    /// Bringing its parked checkpoint back to the GPU (A1111's `/sdapi/v1/reload-checkpoint`).
    case reloading
    /// Asked to stop.
    case stopping
    /// A remote worker that does not answer: probed again, less and less often, until it does.
    case down
}

/// Where a worker's checkpoint is: on the GPU (or a CPU slot), or parked in system RAM. A stopped worker
/// is no longer listed.
public enum WorkerTier: String, Codable, Sendable {
    case gpu
    case ram
}

/// A worker as reported by ``Scheduler/workers()``.
public struct WorkerInfo: Codable, Sendable, Equatable {
    public var id: Int
    public var model: String
    /// The pool's function name.
    public var function: String
    /// The GPU it was placed on; nil on a box without GPU.
    public var gpu: Int?
    public var gpuMemoryMiB: Int
    /// A local worker's port on 127.0.0.1 and process id.
    public var port: Int?
    public var pid: Int32?
    /// A remote worker's server.
    public var remote: RemoteWorkerInfo?
    public var state: WorkerState
    public var tier: WorkerTier
    /// System RAM its checkpoint takes while parked (the pool's `hostMemoryMiB`).
    public var hostMemoryMiB: Int
    /// The GPU memory it says it holds (A1111's `/sdapi/v1/memory`), when it says.
    public var gpuMemoryInUseMiB: Int?
    /// When it entered its current state.
    public var since: Date
    public var tasksServed: Int
    /// How many times it was parked, and brought back.
    public var parks: Int
    public var reloads: Int
    /// The task it is running, when busy.
    public var taskId: String?
}

/// A remote worker's server as reported in ``WorkerInfo``: never its credentials.
public struct RemoteWorkerInfo: Codable, Sendable, Equatable {
    public var name: String
    /// Which of its `maxTasks` slots this worker is (from 1).
    public var slot: Int
    /// Its URL, any user and password in it masked.
    public var url: String
    /// The GPU memory it has, when configured.
    public var gpuMemoryMiB: Int?
    /// The checkpoints it has, and how long its last successful probe took.
    public var checkpoints: [String]
    public var latencyMilliseconds: Double?
    /// Why its last probe failed, while it is down.
    public var error: String?

    init(_ remote: RemoteWorker) {
        name = remote.settings.name
        slot = remote.slot
        url = remote.settings.displayURL
        gpuMemoryMiB = remote.settings.gpuMemoryMiB
        let probe = remote.lastProbe
        checkpoints = probe?.checkpoints ?? []
        latencyMilliseconds = probe?.latencyMilliseconds
        error = remote.lastError
    }
}

/// A GPU and the memory workers have reserved on it, as reported by ``Scheduler/gpus()``.
public struct GPUUsage: Codable, Sendable, Equatable {
    public var index: Int
    public var name: String
    public var memoryMiB: Int
    public var plannedMiB: Int
    /// What its workers say they hold, when any says: it drops as workers park.
    public var inUseMiB: Int?
    public var workers: Int
}

/// Where a task stands, as reported by ``Scheduler/progress(of:)``.
public enum TaskProgress: Sendable {
    /// Waiting for a worker; `position` is 1 for the next task of its model to run; `eta` the estimated
    /// seconds until it finishes, once the model's pace is known.
    case queued(position: Int, eta: Double?)
    /// Running; the worker's own progress report, when it gave one.
    case running(A1111.Progress?)
    /// Not in the scheduler: finished, or unknown.
    case notActive
}

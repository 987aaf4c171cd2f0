import Appliance
import SDBoxCore
import Scheduler

/// `GET /list/sdapi/functions`: every pool by its function name, with its effective and its own settings.
struct PoolList: Encodable {
    /// One pool: `settings` with every value decided, `ownSettings` as stored (unset values left out).
    struct Pool: Encodable {
        let functionName: String
        let model: String
        let settings: PoolSettings
        let ownSettings: PoolSettings
    }

    let functions: [Pool]
    var status = "success"
}

/// `GET /workers`: every live worker, the GPUs with the memory planned on them, and the queues.
struct WorkersAnswer: Encodable {
    /// This box's name (`node.name`).
    let node: String
    let workers: [WorkerInfo]
    let gpus: [GPUUsage]
    let gpuSource: String
    let cpuSlots: Int
    let maxInstances: Int
    /// System RAM parked workers may take (`scheduler.hostMemoryMiB`, 0 when parking is off), and take now.
    let hostMemoryMiB: Int
    let parkedMiB: Int
    let queues: [String: Int]
    /// Worker processes started per model since sdbox started.
    let coldStarts: [String: Int]
    /// What an admin has paused (`POST /admin/queue/pause`).
    let paused: QueuePause
    let defaultProfile: String
    let referenceWorker: Bool
    /// In a fleet, every box (this one too) with its GPUs and workers as it last reported them, and
    /// whether it still renews its heartbeat; absent for a box on LMDB.
    let nodes: [FleetNode]?
    /// In a fleet, the workers of each model on the other boxes as this box counts them (its pools' caps count them too).
    let workersElsewhere: [String: Int]?
}

/// `POST /batch_update_sd_resource`, as the original answers: `status`, the functions that failed
/// (`failFuncList`) and, on failure, why in one string (`errMsg`, joined with `|` as the original joins
/// them), with sdbox's `errors` (the same, one per pool), `updated` and `ignored` (cloud-only fields); a
/// failure also carries `error`, `detail`, `message` and `code`.
struct PoolUpdateAnswer: Encodable {
    let status: String
    let failFuncList: [String]
    var errMsg: String?
    var errors: [String]?
    let updated: [String]
    let ignored: [String]
    var error: String?
    var detail: String?
    var message: String?
    var code: Int?
}

/// `POST /del/sd/functions`, as the original answers: `status`, and on failure the names that were not
/// found (`fails`) with `error` and `detail`.
struct PoolDeletionAnswer: Encodable {
    /// A name that matched no pool, and why.
    struct Failure: Encodable {
        let functionName: String
        let err: String
    }

    let status: String
    var fails: [Failure]?
    var error: String?
    var detail: String?
    var message: String?
    var code: Int?
}

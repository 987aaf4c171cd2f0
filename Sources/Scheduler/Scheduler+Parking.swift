import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SDBoxCore

extension Scheduler {
    /// A worker's checkpoint moving between the GPU and system RAM, its process kept.
    enum CheckpointMove: String {
        /// To system RAM (A1111's `/sdapi/v1/unload-checkpoint`).
        case park
        /// Back to the GPU (A1111's `/sdapi/v1/reload-checkpoint`).
        case reload

        var path: String { self == .park ? "/sdapi/v1/unload-checkpoint" : "/sdapi/v1/reload-checkpoint" }
        /// The worker's state while it moves.
        var state: WorkerState { self == .park ? .parking : .reloading }
    }

    /// The longest a worker may take to move its checkpoint.
    static let checkpointMoveTimeout: TimeAmount = .seconds(300)

    /// Asks the worker to move its checkpoint (see ``DispatchPlanner`` for when); a worker that cannot is
    /// stopped, which frees its GPU memory all the same, and its model's queued tasks wait for another.
    func move(_ workerID: Int, _ move: CheckpointMove, reason: DispatchPlanner.StopReason? = nil) {
        guard let worker = planner.workers[workerID], let process = worker.process else { return }
        var metadata: Logger.Metadata = ["worker": "\(workerID)", "model": "\(worker.model)", "move": "\(move.rawValue)"]
        if let reason { metadata["reason"] = "\(reason.rawValue)" }
        logger.info("moving worker's checkpoint", metadata: metadata)
        let client = runner.client
        Task {
            let (failure, seconds) = await client.post(process.endpoint, path: move.path, timeout: Self.checkpointMoveTimeout)
            await self.moveEnded(workerID, move, failure: failure, seconds: seconds)
        }
    }

    /// Asks the worker how much GPU memory it holds now, for the GPU reports.
    func askMemoryInUse(of workerID: Int) {
        guard let endpoint = planner.workers[workerID]?.slot?.endpoint else { return }
        let client = runner.client
        Task {
            let mebibytes = await client.gpuMemoryInUse(endpoint)
            await self.memoryReported(workerID, mebibytes: mebibytes)
        }
    }

    func memoryReported(_ workerID: Int, mebibytes: Int?) {
        planner.memoryReported(workerID, mebibytes: mebibytes)
    }

    func moveEnded(_ workerID: Int, _ move: CheckpointMove, failure: WorkerCallError?, seconds: Double) {
        guard let worker = planner.workers[workerID], worker.state == move.state else { return }
        let now = Date()
        if let failure {
            logger.warning("worker could not move its checkpoint; stopping it", metadata: ["worker": "\(workerID)", "move": "\(move.rawValue)", "error": "\(failure)"])
            planner.markStopping(workerID, now: now)
            worker.process?.stop()
        } else {
            switch move {
            case .park:
                planner.workerParked(workerID, now: now)
                metrics.workerParked(model: worker.model)
            case .reload:
                planner.workerReloaded(workerID, now: now)
                models[worker.model, default: ModelHistory()].pace.recordReload(seconds: seconds)
                metrics.workerReloaded(model: worker.model)
            }
            askMemoryInUse(of: workerID)
            logger.info("worker's checkpoint moved", metadata: ["worker": "\(workerID)", "move": "\(move.rawValue)", "seconds": "\(seconds)"])
        }
        dispatch()
    }
}

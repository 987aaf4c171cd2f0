import Foundation
import SDBoxCore
import Storage

/// What a box can take on now, for its claims on the fleet's queue.
public struct ClaimRoom: Sendable, Equatable {
    /// How many more tasks it could start soon: idle workers and free slots, less the tasks it already
    /// holds queued.
    public var count: Int
    /// Models with an idle worker here.
    public var idleModels: [String]
    /// Models with a worker here, in either tier.
    public var warmModels: [String]
    /// Models whose queues are paused here.
    public var pausedModels: [String]
    /// Whether the whole queue is paused here.
    public var paused: Bool
}

extension Scheduler {
    /// Whether the task queue is the fleet's (``SchedulerConfiguration/sharedQueue``): a submitted task is
    /// then queued by the box that claims it, not by the one that took the request.
    public nonisolated var sharesQueue: Bool { configuration.sharedQueue }

    /// The most workers this box runs on its GPUs at once (`scheduler.maxInstances`).
    public nonisolated var maxInstances: Int { configuration.maxInstances }

    /// Reads the pause and the pools' settings again from the catalogue, where another box of the fleet
    /// may have changed them, or deleted a pool.
    public func reloadSettings() async throws {
        let pause = try await catalog.queuePause()
        let pools = try await catalog.pools()
        var changed = pause != planner.pause
        planner.pause = pause
        let stored = Dictionary(pools.map { ($0.model, $0.settings) }, uniquingKeysWith: { first, _ in first })
        for (model, settings) in stored where poolSettings[model] != settings {
            apply(settings, to: model)
            changed = true
        }
        // A pool deleted on another box goes here too; with its model deleted (its record gone, or kept
        // marked deleted), its running tasks stop as well. A model's record and its pool go in one write.
        for model in poolSettings.keys.sorted() where stored[model] == nil {
            if try await catalog.model(.stableDiffusion, named: model).map({ $0.status == .deleted }) ?? true {
                await dropPool(model: model, reason: "the model \(model) was deleted", stopRunning: true)
            } else {
                await dropPool(model: model, reason: "the pool \(PoolRecord.name(forModel: model)) was deleted", stopRunning: false)
            }
            changed = true
        }
        if changed { dispatch() }
    }

    /// What this box can take on now: an idle worker (of any model: one of another model makes room) or a
    /// free slot, each less a task already queued here.
    public func claimRoom() -> ClaimRoom {
        let live = planner.workers.values.filter { $0.state != .stopping && $0.state != .down }
        let idle = live.filter { $0.state == .ready }
        let freeSlots = max(0, configuration.maxInstances - planner.slotsTaken)
        let queued = planner.queueDepths.values.reduce(0, +)
        return ClaimRoom(
            count: planner.pause.all ? 0 : max(0, idle.count + freeSlots - queued),
            idleModels: Array(Set(idle.map(\.model))).sorted(), warmModels: Array(Set(live.map(\.model))).sorted(),
            pausedModels: planner.pause.models.sorted(), paused: planner.pause.all
        )
    }

    /// Whether no worker of this box can ever serve `model` (its pool needs a bigger GPU than this box has):
    /// in a fleet, its tasks are left to the other boxes.
    public func cannotServe(_ model: String) -> Bool {
        planner.unplaceable(model) != nil
    }

    /// Sets how many workers of each model the other boxes run, which pools' caps count.
    public func setWorkersElsewhere(_ counts: [String: Int]) {
        guard planner.workersElsewhere != counts else { return }
        planner.workersElsewhere = counts
        dispatch()
    }

    /// How many workers of each model the other boxes run, as this box last read their reports.
    public func workersElsewhere() -> [String: Int] { planner.workersElsewhere }

    /// Sends the cancels of tasks this box neither queues nor runs to `body` (the fleet).
    public func forwardCancels(to body: @escaping @Sendable (String) async throws -> TaskRecord?) {
        cancelElsewhere = body
    }

    /// Notes the progress a task running on another box announced.
    public nonisolated func noteProgressElsewhere(_ report: A1111.Progress, of id: String) {
        progressElsewhere.post(report, of: id)
    }

    /// Forgets the progress of a task that no longer runs on another box.
    public nonisolated func forgetProgressElsewhere(of id: String) {
        progressElsewhere.remove(id)
    }
}

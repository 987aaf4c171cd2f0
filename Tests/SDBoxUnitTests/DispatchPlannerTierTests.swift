import Foundation
import SDBoxCore
@testable import Scheduler
import Testing

/// The residency tiers (on the GPU, parked in system RAM, stopped) and the switch-cost-aware order,
/// driven with a made-up clock and no processes.
@Suite struct DispatchPlannerTierTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    /// One GPU with room for one 6000 MiB worker, and a host budget for `parkable` parked ones.
    func planner(gpus: [GPU] = [GPU(index: 0, memoryMiB: 10000)], maxInstances: Int = 2, parkable: Int = 2, fairness: TimeInterval = 60)
        -> DispatchPlanner
    {
        DispatchPlanner(
            inventory: GPUInventory(gpus: gpus, cpuSlots: 4, source: .configuration), maxInstances: maxInstances,
            defaultPolicy: PoolPolicy(idleTimeout: 600, gpuMemoryMiB: 6000, hostMemoryMiB: 5000), hostMemoryMiB: parkable * 5000,
            fairnessWait: fairness
        )
    }

    /// Runs one task of `model` to the end on a new worker, started and ready at `now` (`task` is queued
    /// first, unless nil: one is queued already); returns the worker's id.
    @discardableResult
    func serve(_ p: inout DispatchPlanner, _ model: String, task: String?, now: Date) -> Int {
        if let task { p.enqueue(task, model: model, user: "u", enqueuedAt: now) }
        let started = p.plan(now: now)
        guard case .start(let id, model, _) = started.last else {
            Issue.record("expected a start of \(model), got \(started)")
            return 0
        }
        p.workerReady(id, now: now)
        let assigned = p.plan(now: now)
        guard case .assign(_, id) = assigned.first, assigned.count == 1 else {
            Issue.record("expected one assignment to \(id), got \(assigned)")
            return id
        }
        p.taskDone(workerID: id, healthy: true, now: now)
        return id
    }

    @Test func anIdleWorkerIsParkedToMakeRoomAndComesBackInsteadOfStarting() {
        var p = planner()
        let a = serve(&p, "A", task: "a1", now: at(0))
        p.enqueue("b1", model: "B", user: "u", enqueuedAt: at(1))
        #expect(p.plan(now: at(1)) == [.park(workerID: a, reason: .makeRoom)])
        #expect(p.plan(now: at(2)) == [], "B waits until A's GPU memory is free")
        #expect(p.reservedMemory[0] == 6000 && p.parkedMemory == 5000, "a parking worker holds both until it is parked")
        p.workerParked(a, now: at(3))
        #expect(p.workers[a]?.tier == .ram && p.workers[a]?.parks == 1)
        #expect(p.reservedMemory[0, default: 0] == 0, "a parked worker holds no GPU memory")
        let startB = p.plan(now: at(3))
        #expect(startB == [.start(workerID: 2, model: "B", gpu: 0)], "the parked worker holds no slot either")
        p.workerReady(2, now: at(4))
        #expect(p.plan(now: at(4)) == [.assign(taskID: "b1", workerID: 2)])
        p.taskDone(workerID: 2, healthy: true, now: at(5))
        // A again: B is parked, and A comes back from RAM rather than a new process.
        p.enqueue("a2", model: "A", user: "u", enqueuedAt: at(6))
        #expect(p.plan(now: at(6)) == [.park(workerID: 2, reason: .makeRoom)])
        p.workerParked(2, now: at(7))
        #expect(p.plan(now: at(7)) == [.reload(workerID: a)])
        #expect(p.workers[a]?.state == .reloading && p.workers[a]?.tier == .gpu && p.reservedMemory[0] == 6000)
        #expect(p.plan(now: at(7.5)) == [], "no second reload or start while it reloads")
        p.workerReloaded(a, now: at(8))
        #expect(p.plan(now: at(8)) == [.assign(taskID: "a2", workerID: a)])
        #expect(p.workers[a]?.reloads == 1)
    }

    @Test func withParkingOffAnIdleWorkerStopsAsBefore() {
        var p = planner(parkable: 0)
        let a = serve(&p, "A", task: "a1", now: at(0))
        p.enqueue("b1", model: "B", user: "u", enqueuedAt: at(1))
        #expect(p.plan(now: at(1)) == [.stop(workerID: a, reason: .makeRoom)])
    }

    @Test func theHostBudgetIsKeptInLeastRecentlyUsedOrderOverBothTiers() {
        // Room in RAM for one parked worker.
        var p = planner(parkable: 1)
        let a = serve(&p, "A", task: "a1", now: at(0))
        p.enqueue("b1", model: "B", user: "u", enqueuedAt: at(1))
        _ = p.plan(now: at(1))
        p.workerParked(a, now: at(2))
        let b = serve(&p, "B", task: nil, now: at(3))
        // C needs B's GPU memory; RAM holds only one: A, used less recently than B, stops so B parks.
        p.enqueue("c1", model: "C", user: "u", enqueuedAt: at(4))
        #expect(p.plan(now: at(4)) == [.stop(workerID: a, reason: .makeRoom), .park(workerID: b, reason: .makeRoom)])
    }

    @Test func aParkedWorkerUsedMoreRecentlyThanTheVictimIsKept() {
        // RAM for one parked worker. C fits only GPU 0, so A (not the least recently used) is parked for it.
        var p = planner(gpus: [GPU(index: 0, memoryMiB: 10000), GPU(index: 1, memoryMiB: 5000)], maxInstances: 3, parkable: 1)
        p.policies["B"] = PoolPolicy(gpuMemoryMiB: 3000, hostMemoryMiB: 5000)
        p.policies["D"] = PoolPolicy(gpuMemoryMiB: 4500, hostMemoryMiB: 5000)
        let a = serve(&p, "A", task: "a1", now: at(0))
        let b = serve(&p, "B", task: "b1", now: at(1))
        #expect(p.workers[a]?.gpu == 0 && p.workers[b]?.gpu == 1)
        p.enqueue("a2", model: "A", user: "u", enqueuedAt: at(2))
        _ = p.plan(now: at(2))
        p.taskDone(workerID: a, healthy: true, now: at(2))  // A last used at 2, B at 1
        p.enqueue("c1", model: "C", user: "u", enqueuedAt: at(3))
        #expect(p.plan(now: at(3)) == [.park(workerID: a, reason: .makeRoom)], "parking B would not fit C")
        p.workerParked(a, now: at(3))
        let c = serve(&p, "C", task: nil, now: at(4))
        // D fits GPU 1 once B goes. B (used at 1) is older than parked A (used at 2): B stops, A stays.
        p.enqueue("d1", model: "D", user: "u", enqueuedAt: at(5))
        #expect(p.plan(now: at(5)) == [.stop(workerID: b, reason: .makeRoom)])
        #expect(p.workers[a]?.state == .parked && p.workers[c]?.state == .ready)
    }

    @Test func aParkedWorkerComesBackOnItsOwnGPU() {
        // A parked on GPU 0; GPU 1 has room, but A's pool allows one worker: room is made on GPU 0.
        var p = planner(gpus: [GPU(index: 0, memoryMiB: 10000), GPU(index: 1, memoryMiB: 10000)], maxInstances: 3)
        let a = serve(&p, "A", task: "a1", now: at(0))
        let b = serve(&p, "B", task: "b1", now: at(1))
        #expect(p.workers[a]?.gpu == 0 && p.workers[b]?.gpu == 1)
        p.enqueue("c1", model: "C", user: "u", enqueuedAt: at(2))
        #expect(p.plan(now: at(2)) == [.park(workerID: a, reason: .makeRoom)])
        p.workerParked(a, now: at(3))
        _ = p.plan(now: at(3))  // C starts on GPU 0
        #expect(p.workers[3]?.gpu == 0)
        p.workerReady(3, now: at(4))
        _ = p.plan(now: at(4))
        p.taskDone(workerID: 3, healthy: true, now: at(5))
        // B stops holding GPU 1 (idle timeout far away): free GPU 1 by hand, as if B had gone.
        p.markStopping(b, now: at(6))
        p.workerGone(b)
        p.enqueue("a2", model: "A", user: "u", enqueuedAt: at(7))
        #expect(p.plan(now: at(7)) == [.park(workerID: 3, reason: .makeRoom)], "room on A's GPU, not a second A process on GPU 1")
        p.workerParked(3, now: at(8))
        #expect(p.plan(now: at(8)) == [.reload(workerID: a)])
    }

    @Test func aReloadGoesBeforeAColdStartUntilTheFairnessBound() {
        // One slot; B has a parked worker, C none. C's task is older, but a reload is the cheaper switch.
        var p = planner(maxInstances: 1, fairness: 60)
        let b = serve(&p, "B", task: "b1", now: at(0))
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(1))
        _ = p.plan(now: at(1))
        p.workerParked(b, now: at(2))
        _ = p.plan(now: at(2))  // A starts
        p.workerReady(2, now: at(3))
        p.enqueue("a2", model: "A", user: "u", enqueuedAt: at(3))
        _ = p.plan(now: at(3))  // A runs a1 (a2 queued)
        p.enqueue("c1", model: "C", user: "u", enqueuedAt: at(4))
        p.enqueue("b2", model: "B", user: "u", enqueuedAt: at(5))
        // A's queue is served first: a warm model does not switch before the bound.
        p.taskDone(workerID: 2, healthy: true, now: at(10))
        #expect(p.plan(now: at(10)) == [.assign(taskID: "a2", workerID: 2)])
        p.taskDone(workerID: 2, healthy: true, now: at(11))
        let switched = p.plan(now: at(11))
        #expect(switched == [.park(workerID: 2, reason: .makeRoom)])
        p.workerParked(2, now: at(12))
        #expect(p.plan(now: at(12)) == [.reload(workerID: b)], "B's reload before C's cold start, though c1 is older")
        _ = b
    }

    @Test func pastTheFairnessBoundAColdModelGoesFirst() {
        var p = planner(maxInstances: 1, fairness: 60)
        let b = serve(&p, "B", task: "b1", now: at(0))
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(1))
        _ = p.plan(now: at(1))
        p.workerParked(b, now: at(2))
        _ = p.plan(now: at(2))
        p.workerReady(2, now: at(3))
        _ = p.plan(now: at(3))
        p.enqueue("c1", model: "C", user: "u", enqueuedAt: at(4))
        p.enqueue("b2", model: "B", user: "u", enqueuedAt: at(5))
        p.taskDone(workerID: 2, healthy: true, now: at(70))
        // c1 has waited 66 s: past the bound, it gets the slot before B's cheap reload.
        let decisions = p.plan(now: at(70))
        #expect(decisions.first == .park(workerID: 2, reason: .fairness) || decisions.first == .park(workerID: 2, reason: .makeRoom))
        p.workerParked(2, now: at(71))
        #expect(p.plan(now: at(71)) == [.start(workerID: 3, model: "C", gpu: 0)])
    }

    @Test func aWarmModelKeepsItsSlotUntilTheWaitingOneReachesTheBound() {
        var p = planner(maxInstances: 1, fairness: 30)
        let a = serve(&p, "A", task: "a0", now: at(0))
        p.enqueue("b1", model: "B", user: "u", enqueuedAt: at(1))
        for i in 1...5 { p.enqueue("a\(i)", model: "A", user: "u", enqueuedAt: at(2)) }
        #expect(p.plan(now: at(2)) == [.assign(taskID: "a1", workerID: a)])
        p.taskDone(workerID: a, healthy: true, now: at(10))
        #expect(p.plan(now: at(10)) == [.assign(taskID: "a2", workerID: a)], "no switch before the bound")
        p.taskDone(workerID: a, healthy: true, now: at(40))
        #expect(p.plan(now: at(40)) == [.park(workerID: a, reason: .fairness)], "b1 waited 39 s: A, whose next task is younger, yields and is parked")
    }

    @Test func parkedWorkersStopAtTheirIdleTimeoutAndHoldNoSlot() {
        var p = planner(maxInstances: 1)
        p.defaultPolicy.idleTimeout = 100
        let a = serve(&p, "A", task: "a1", now: at(0))
        p.enqueue("b1", model: "B", user: "u", enqueuedAt: at(1))
        _ = p.plan(now: at(1))
        p.workerParked(a, now: at(2))
        #expect(p.plan(now: at(2)) == [.start(workerID: 2, model: "B", gpu: 0)], "a parked worker is outside the cap of 1")
        p.workerReady(2, now: at(3))
        _ = p.plan(now: at(3))
        p.taskDone(workerID: 2, healthy: true, now: at(50))
        #expect(p.plan(now: at(100)) == [.stop(workerID: a, reason: .idle)], "A, last used at 0, stops at 100 though parked at 2")
    }
}

extension DispatchPlannerTierTests {
    @Test func theWorkerThatComesBackLeavesRAMForTheOneThatMakesRoom() {
        // RAM for one parked worker only: B parks for A, and A is not stopped for it.
        var p = planner(maxInstances: 1, parkable: 1)
        let a = serve(&p, "A", task: "a1", now: at(0))
        p.enqueue("b1", model: "B", user: "u", enqueuedAt: at(1))
        _ = p.plan(now: at(1))
        p.workerParked(a, now: at(2))
        let b = serve(&p, "B", task: nil, now: at(3))
        p.enqueue("a2", model: "A", user: "u", enqueuedAt: at(4))
        #expect(p.plan(now: at(4)) == [.park(workerID: b, reason: .makeRoom)])
        p.workerParked(b, now: at(5))
        #expect(p.plan(now: at(5)) == [.reload(workerID: a)])
        #expect(p.parkedMemory == 5000, "once A is back on the GPU, RAM holds B alone")
    }
}

/// Which queued models' checkpoints are read ahead.
@Suite struct CheckpointReadAheadTests {
    @Test func theMostUrgentCheckpointsThatFitTheBudgetTogether() {
        let candidates: [(path: String, size: Int64?)] = [("a", 4), ("gone", nil), ("b", 5), ("c", 2), ("d", 1)]
        #expect(CheckpointReadAhead.select(candidates, budget: 10) == ["a", "b"], "c would fit alone, but b's turn comes first")
        #expect(CheckpointReadAhead.select(candidates, budget: 11) == ["a", "b", "c"])
        #expect(CheckpointReadAhead.select(candidates, budget: 3) == [], "the first does not fit: nothing is read ahead out of turn")
        #expect(CheckpointReadAhead.select(candidates, budget: 0) == [])
    }
}

extension DispatchPlannerTierTests {
    @Test func theNextModelComesBackWhileAnotherWorkerStillRuns() {
        // Room for two workers: A is parked for C; once a slot is free again, A comes back at once,
        // while C still runs its task, not after it.
        var p = planner(gpus: [GPU(index: 0, memoryMiB: 16000)], maxInstances: 2)
        let a = serve(&p, "A", task: "a1", now: at(0))
        let b = serve(&p, "B", task: "b1", now: at(1))
        p.enqueue("c1", model: "C", user: "u", enqueuedAt: at(2))
        #expect(p.plan(now: at(2)) == [.park(workerID: a, reason: .makeRoom)])
        p.workerParked(a, now: at(2))
        let c = serve(&p, "C", task: nil, now: at(3))
        p.enqueue("c2", model: "C", user: "u", enqueuedAt: at(4))
        #expect(p.plan(now: at(4)) == [.assign(taskID: "c2", workerID: c)])
        p.markStopping(b, now: at(5))
        p.workerGone(b)
        p.enqueue("a2", model: "A", user: "u", enqueuedAt: at(6))
        #expect(p.plan(now: at(6)) == [.reload(workerID: a)])
        #expect(p.workers[c]?.state == .busy)
    }
}

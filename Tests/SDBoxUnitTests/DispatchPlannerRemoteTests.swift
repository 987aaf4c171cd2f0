import Foundation
import SDBoxCore
@testable import Scheduler
import Testing

/// Remote workers in the planner: slots it neither starts, parks nor stops, fed by probes.
@Suite struct DispatchPlannerRemoteTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    func planner(maxInstances: Int = 1) -> DispatchPlanner {
        DispatchPlanner(
            inventory: GPUInventory(gpus: [], cpuSlots: 4, source: .none), maxInstances: maxInstances,
            defaultPolicy: PoolPolicy(maxInstances: 2), hostMemoryMiB: 0
        )
    }

    @Test func aRemoteWorkerTakesItsCheckpointsTasksAndIsNeverStoppedOrCounted() {
        var p = planner()
        let remote = p.addRemote(now: at(0))
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(0))
        #expect(p.plan(now: at(0)) == [.start(workerID: 2, model: "A", gpu: nil)], "down: a local worker starts")
        p.remoteAnswered(remote, model: "A", now: at(1))
        #expect(p.plan(now: at(1)) == [.assign(taskID: "a1", workerID: remote)])
        p.taskDone(workerID: remote, healthy: true, now: at(2))
        // Idle far past the idle timeout, and wanted by another model: never stopped.
        p.workerReady(2, now: at(2))
        p.enqueue("b1", model: "B", user: "u", enqueuedAt: at(3))
        let later = p.plan(now: at(10_000))
        #expect(!later.contains { if case .stop(remote, _) = $0 { true } else { false } })
        #expect(p.workers[remote]?.state == .ready)
        #expect(p.slotsTaken == p.workers.values.filter { !$0.isRemote }.count, "the remote worker holds no slot of this box")
    }

    @Test func aRemoteWorkerIsSwitchedOnlyWhenItMayAndNothingWaitsForItsModel() {
        var p = planner()
        let remote = p.addRemote(now: at(0))
        p.remoteAnswered(remote, model: "A", switchable: ["A", "B"], now: at(0))
        // The local slot is busy with C.
        p.enqueue("c1", model: "C", user: "u", enqueuedAt: at(0))
        _ = p.plan(now: at(0))
        p.workerReady(2, now: at(0))
        #expect(p.plan(now: at(0)) == [.assign(taskID: "c1", workerID: 2)])
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(1))
        p.enqueue("b1", model: "B", user: "u", enqueuedAt: at(2))
        #expect(p.plan(now: at(2)) == [.assign(taskID: "a1", workerID: remote)], "A's task first; B waits")
        p.taskDone(workerID: remote, healthy: true, now: at(3))
        #expect(p.plan(now: at(3)) == [.switchCheckpoint(workerID: remote, model: "B")])
        #expect(p.workers[remote]?.state == .starting && p.workers[remote]?.model == "B")
        p.workerReady(remote, now: at(4))
        #expect(p.plan(now: at(4)) == [.assign(taskID: "b1", workerID: remote)])
        // A model it does not have never takes it.
        p.taskDone(workerID: remote, healthy: true, now: at(5))
        p.enqueue("d1", model: "D", user: "u", enqueuedAt: at(5))
        #expect(p.plan(now: at(5)) == [])
    }

    @Test func aRemoteWorkerLostUnderATaskIsDownAndCountsForNothing() {
        var p = planner()
        let remote = p.addRemote(now: at(0))
        p.remoteAnswered(remote, model: "A", now: at(0))
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(0))
        _ = p.plan(now: at(0))
        p.taskDone(workerID: remote, healthy: false, now: at(1))
        #expect(p.workers[remote]?.state == .down)
        #expect(p.liveWorkers(model: "A").isEmpty)
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(0))
        #expect(p.plan(now: at(1)) == [.start(workerID: 2, model: "A", gpu: nil)], "its task is served here meanwhile")
    }
}

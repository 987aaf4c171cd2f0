import Foundation
import SDBoxCore
import Scheduler
import Testing

/// The scheduling rules, driven with a made-up clock and no processes.
@Suite struct DispatchPlannerTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)

    func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    func planner(
        gpus: [GPU] = [], cpuSlots: Int = 8, maxInstances: Int = 2, policy: PoolPolicy = PoolPolicy(), fairness: TimeInterval = 60
    ) -> DispatchPlanner {
        DispatchPlanner(
            inventory: GPUInventory(gpus: gpus, cpuSlots: cpuSlots, source: gpus.isEmpty ? .none : .configuration),
            maxInstances: maxInstances, defaultPolicy: policy, fairnessWait: fairness
        )
    }

    /// Starts every worker the plan asks for and makes it ready.
    func startAndReady(_ planner: inout DispatchPlanner, now: Date) -> [DispatchPlanner.Decision] {
        let decisions = planner.plan(now: now)
        for case .start(let id, _, _) in decisions { planner.workerReady(id, now: now) }
        return decisions
    }

    @Test func startsOneWorkerThenReusesIt() {
        var p = planner()
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(0))
        let planned1 = p.plan(now: at(0))
        #expect(planned1 == [.start(workerID: 1, model: "A", gpu: nil)])
        let planned2 = p.plan(now: at(1))
        #expect(planned2 == [], "no second start while the first loads")
        p.workerReady(1, now: at(2))
        let planned3 = p.plan(now: at(2))
        #expect(planned3 == [.assign(taskID: "a1", workerID: 1)])
        p.enqueue("a2", model: "A", user: "u", enqueuedAt: at(3))
        let planned4 = p.plan(now: at(3))
        #expect(planned4 == [], "pool max 1: a2 waits for the busy worker")
        p.taskDone(workerID: 1, healthy: true, now: at(4))
        let planned5 = p.plan(now: at(4))
        #expect(planned5 == [.assign(taskID: "a2", workerID: 1)])
    }

    /// In a fleet, a pool's caps count the workers other boxes run for it.
    @Test func aPoolsCapsCountTheWorkersOfOtherBoxes() {
        var p = planner(maxInstances: 4, policy: PoolPolicy(minInstances: 2, maxInstances: 3))
        p.workersElsewhere = ["A": 2]
        for index in 0..<4 { p.enqueue("a\(index)", model: "A", user: "u", enqueuedAt: at(0)) }
        #expect(p.plan(now: at(0)) == [.start(workerID: 1, model: "A", gpu: nil)], "3 allowed, 2 elsewhere: one here")
        p.workersElsewhere = ["A": 3]
        #expect(p.plan(now: at(1)) == [], "the fleet has them all")
        // Kept warm across the fleet: B's minimum of 2 is met by the other boxes' 2.
        var warm = planner(maxInstances: 4, policy: PoolPolicy(minInstances: 2, maxInstances: 3))
        warm.policies["B"] = PoolPolicy(minInstances: 2, maxInstances: 3)
        warm.workersElsewhere = ["B": 2]
        #expect(warm.plan(now: at(0)) == [])
        warm.workersElsewhere = ["B": 1]
        #expect(warm.plan(now: at(1)) == [.start(workerID: 1, model: "B", gpu: nil)])
    }

    @Test func theWorkerTableKeepsWhenEachStateBeganAndTasksServed() {
        var p = planner(policy: PoolPolicy(idleTimeout: 5))
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(0))
        _ = p.plan(now: at(0))
        #expect(p.workers[1]?.startedAt == at(0) && p.workers[1]?.since == at(0) && p.workers[1]?.state == .starting)
        p.workerReady(1, now: at(2))
        #expect(p.workers[1]?.since == at(2))
        _ = p.plan(now: at(3))
        #expect(p.workers[1]?.state == .busy && p.workers[1]?.since == at(3) && p.workers[1]?.tasksServed == 0)
        p.taskDone(workerID: 1, healthy: true, now: at(4))
        #expect(p.workers[1]?.state == .ready && p.workers[1]?.since == at(4) && p.workers[1]?.tasksServed == 1)
        #expect(p.plan(now: at(9)) == [.stop(workerID: 1, reason: .idle)])
        #expect(p.workers[1]?.state == .stopping && p.workers[1]?.since == at(9) && p.workers[1]?.startedAt == at(0))
    }

    @Test func scalesUpToThePoolAndGlobalCaps() {
        var p = planner(maxInstances: 3, policy: PoolPolicy(maxInstances: 2))
        for i in 0..<5 { p.enqueue("a\(i)", model: "A", user: "u", enqueuedAt: at(Double(i))) }
        p.enqueue("b0", model: "B", user: "u", enqueuedAt: at(10))
        p.enqueue("c0", model: "C", user: "u", enqueuedAt: at(11))
        let decisions = p.plan(now: at(12))
        #expect(decisions == [
            .start(workerID: 1, model: "A", gpu: nil), .start(workerID: 2, model: "A", gpu: nil),
            .start(workerID: 3, model: "B", gpu: nil),
        ])
        #expect(p.workers.count == 3, "the global cap holds; C waits")
    }

    @Test func cpuSlotsBoundWorkersWithoutGPU() {
        var p = planner(cpuSlots: 1, maxInstances: 4)
        p.enqueue("a", model: "A", user: "u", enqueuedAt: at(0))
        p.enqueue("b", model: "B", user: "u", enqueuedAt: at(1))
        let planned1 = p.plan(now: at(1))
        #expect(planned1 == [.start(workerID: 1, model: "A", gpu: nil)])
    }

    @Test func placesOnGPUsWithFreeMemoryAndNeverOvercommits() {
        let gpus = [GPU(index: 0, memoryMiB: 24000), GPU(index: 1, memoryMiB: 12000)]
        var p = planner(gpus: gpus, maxInstances: 8, policy: PoolPolicy(gpuMemoryMiB: 10000))
        for (i, model) in ["A", "B", "C", "D"].enumerated() { p.enqueue(model, model: model, user: "u", enqueuedAt: at(Double(i))) }
        let decisions = p.plan(now: at(5))
        // GPU 0 (most free) takes A, then GPU 1 and GPU 0 each have room for one more; D does not fit.
        #expect(decisions == [
            .start(workerID: 1, model: "A", gpu: 0), .start(workerID: 2, model: "B", gpu: 0),
            .start(workerID: 3, model: "C", gpu: 1),
        ])
        #expect(p.reservedMemory == [0: 20000, 1: 10000])
    }

    @Test func rejectsTasksNoGPUCanHold() {
        var p = planner(gpus: [GPU(index: 0, memoryMiB: 8000)], policy: PoolPolicy(gpuMemoryMiB: 10000))
        p.enqueue("x", model: "Huge", user: "u", enqueuedAt: at(0))
        let decisions = p.plan(now: at(0))
        guard case .reject(let ids, let model, let reason) = decisions.first else {
            Issue.record("expected a rejection, got \(decisions)")
            return
        }
        #expect(ids == ["x"] && model == "Huge")
        #expect(reason.contains("10000 MiB"))
    }

    @Test func evictsTheLeastRecentlyUsedIdleWorkerForAWaitingModel() {
        var p = planner(maxInstances: 2)
        p.enqueue("a", model: "A", user: "u", enqueuedAt: at(0))
        p.enqueue("b", model: "B", user: "u", enqueuedAt: at(0.5))
        _ = startAndReady(&p, now: at(1))
        _ = p.plan(now: at(1))
        p.taskDone(workerID: 1, healthy: true, now: at(2))  // A idle since 2
        p.taskDone(workerID: 2, healthy: true, now: at(3))  // B idle since 3
        p.enqueue("c", model: "C", user: "u", enqueuedAt: at(4))
        let planned1 = p.plan(now: at(4))
        #expect(planned1 == [.stop(workerID: 1, reason: .makeRoom)])
        let planned2 = p.plan(now: at(5))
        #expect(planned2 == [], "one eviction per waiting model at a time")
        p.workerGone(1)
        let planned3 = p.plan(now: at(6))
        #expect(planned3 == [.start(workerID: 3, model: "C", gpu: nil)])
    }

    @Test func neverEvictsABusyWorkerOrOneWithQueuedWork() {
        var p = planner(maxInstances: 1)
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(0))
        p.enqueue("a2", model: "A", user: "u", enqueuedAt: at(0))
        _ = startAndReady(&p, now: at(0))
        let planned1 = p.plan(now: at(0))
        #expect(planned1 == [.assign(taskID: "a1", workerID: 1)])
        p.enqueue("b", model: "B", user: "u", enqueuedAt: at(1))
        let planned2 = p.plan(now: at(2))
        #expect(planned2 == [], "A's worker is busy")
        p.taskDone(workerID: 1, healthy: true, now: at(3))
        let planned3 = p.plan(now: at(3))
        #expect(planned3 == [.assign(taskID: "a2", workerID: 1)], "a2 is older than b and fairness has not kicked in")
    }

    @Test func fairnessBoundsTheWaitOfAModelStarvedByABusierOne() {
        var p = planner(maxInstances: 1, fairness: 60)
        p.enqueue("a0", model: "A", user: "u", enqueuedAt: at(0))
        _ = startAndReady(&p, now: at(0))
        let planned1 = p.plan(now: at(0))
        #expect(planned1 == [.assign(taskID: "a0", workerID: 1)])
        p.enqueue("b0", model: "B", user: "u", enqueuedAt: at(1))
        // A keeps receiving work: each time its worker frees, a younger A task is waiting.
        var now = 1.0
        var assigned: [String] = []
        var yielded = false
        for i in 1...100 {
            p.enqueue("a\(i)", model: "A", user: "u", enqueuedAt: at(now))
            now += 10
            p.taskDone(workerID: 1, healthy: true, now: at(now))
            let decisions = p.plan(now: at(now))
            if decisions == [.stop(workerID: 1, reason: .fairness)] {
                yielded = true
                break
            }
            for case .assign(let id, _) in decisions { assigned.append(id) }
        }
        #expect(yielded)
        // b0 waited 60 s at most before A's worker yielded at its next free moment (tasks take 10 s).
        #expect(now - 1 <= 70, "B waited \(now - 1) s")
        // Until then A's worker kept taking A's tasks (a1 was as old as b0, the later ones younger).
        #expect(assigned.count >= 5)
        p.workerGone(1)
        let planned2 = p.plan(now: at(now + 1))
        #expect(planned2 == [.start(workerID: 2, model: "B", gpu: nil)])
    }

    @Test func prioritiesOrderAModelsQueueWithoutStarvation() {
        var p = planner()
        p.enqueue("low", model: "A", user: "u", priority: 0, enqueuedAt: at(0))
        p.enqueue("high", model: "A", user: "u", priority: 1, enqueuedAt: at(30))
        p.enqueue("later", model: "A", user: "u", priority: 1, enqueuedAt: at(90))
        #expect(p.position(of: "high")?.position == 1, "priority 1 is worth 60 s of waiting")
        #expect(p.position(of: "low")?.position == 2)
        #expect(p.position(of: "later")?.position == 3, "a high priority 90 s later does not overtake")
    }

    @Test func idleWorkersScaleDownToTheMinimum() {
        var p = planner(maxInstances: 4, policy: PoolPolicy(minInstances: 0, maxInstances: 2, idleTimeout: 300))
        p.policies["Warm"] = PoolPolicy(minInstances: 1, maxInstances: 1, idleTimeout: 300)
        p.enqueue("a", model: "A", user: "u", enqueuedAt: at(0))
        let first = startAndReady(&p, now: at(0))
        #expect(first == [.start(workerID: 1, model: "A", gpu: nil), .start(workerID: 2, model: "Warm", gpu: nil)],
            "a pool with minInstances starts warm")
        let planned1 = p.plan(now: at(0))
        #expect(planned1 == [.assign(taskID: "a", workerID: 1)])
        p.taskDone(workerID: 1, healthy: true, now: at(10))
        let planned2 = p.plan(now: at(309))
        #expect(planned2 == [])
        let planned3 = p.plan(now: at(310))
        #expect(planned3 == [.stop(workerID: 1, reason: .idle)], "A scales to zero; Warm stays")
        p.workerGone(1)
        let planned4 = p.plan(now: at(10_000))
        #expect(planned4 == [])
        #expect(p.liveWorkers(model: "Warm").count == 1)
    }

    @Test func warmPoolsRestartAfterTheirWorkerDies() {
        var p = planner()
        p.policies["Warm"] = PoolPolicy(minInstances: 1)
        let planned1 = p.plan(now: at(0))
        #expect(planned1 == [.start(workerID: 1, model: "Warm", gpu: nil)])
        p.workerGone(1)
        let planned2 = p.plan(now: at(1))
        #expect(planned2 == [.start(workerID: 2, model: "Warm", gpu: nil)])
    }

    @Test func anUnhealthyWorkerStopsAndItsTaskKeepsItsPlace() {
        var p = planner()
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(0))
        p.enqueue("a2", model: "A", user: "u", enqueuedAt: at(1))
        _ = startAndReady(&p, now: at(1))
        let planned1 = p.plan(now: at(1))
        #expect(planned1 == [.assign(taskID: "a1", workerID: 1)])
        p.taskDone(workerID: 1, healthy: false, now: at(2))
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(0))  // re-queued by the scheduler with its original time
        #expect(p.workers[1]?.state == .stopping)
        #expect(p.position(of: "a1")?.position == 1)
        let planned2 = p.plan(now: at(2))
        #expect(planned2 == [.start(workerID: 2, model: "A", gpu: nil)], "a replacement starts beside the dying worker (cap 2)")
    }

    @Test func removingAndCountingQueuedTasks() {
        var p = planner()
        p.enqueue("a1", model: "A", user: "u", enqueuedAt: at(0))
        p.enqueue("a2", model: "A", user: "u", enqueuedAt: at(1))
        p.enqueue("b1", model: "B", user: "u", enqueuedAt: at(2))
        let removed = p.remove("a1")
        let removedAgain = p.remove("a1")
        #expect(removed && !removedAgain)
        #expect(p.queueDepths == ["A": 1, "B": 1])
        let drained = p.removeAll(model: "B")
        #expect(drained == ["b1"])
        #expect(p.queueDepths == ["A": 1])
    }
}

extension DispatchPlannerTests {
    /// A queued task's position, counted without making the queue's order, is its place in that order,
    /// whatever mix of users, priorities, admins' cross-user priorities, removals and dispatches came before.
    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func positionsMatchTheOrderUnderRandomChanges(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var p = planner(maxInstances: 1)
        var queued: [String] = []
        for step in 0..<400 {
            let roll = random.next() % 10
            if roll < 6 || queued.isEmpty {
                let id = "t\(step)"
                let priority = Int(random.next() % 3) - 1
                p.enqueue(
                    id, model: "A", user: "u\(random.next() % 4)", priority: priority, crossUserPriority: random.next() % 20 == 0,
                    enqueuedAt: at(Double(random.next() % 100))
                )
                queued.append(id)
            } else if roll < 8 {
                let id = queued.remove(at: Int(random.next() % UInt64(queued.count)))
                let removed = p.remove(id)
                #expect(removed)
            } else {
                // Dispatch: the one worker finishes its task, if any, and takes the queue's head.
                if let busy = p.workers.values.first(where: { $0.state == .busy }) { p.taskDone(workerID: busy.id, healthy: true, now: at(200)) }
                for decision in p.plan(now: at(200)) {
                    if case .start(let id, _, _) = decision { p.workerReady(id, now: at(200)) }
                    if case .assign(let id, _) = decision { queued.removeAll { $0 == id } }
                }
                for case .assign(let id, _) in p.plan(now: at(200)) { queued.removeAll { $0 == id } }
            }
            let order = p.queuedIDs(model: "A")
            #expect(Set(order) == Set(queued))
            for (index, id) in order.enumerated() {
                #expect(p.position(of: id)?.position == index + 1, "step \(step), task \(id)")
            }
        }
    }
}

@Suite struct GPUInventoryTests {
    @Test func parsesNvidiaSMI() {
        let output = """
            0, NVIDIA GeForce RTX 4090, 24564, 1200
            1, NVIDIA A10, 23028, 0
            garbage line
            """
        #expect(GPUInventory.parseNvidiaSMI(output) == [
            GPU(index: 0, name: "NVIDIA GeForce RTX 4090", memoryMiB: 23364),
            GPU(index: 1, name: "NVIDIA A10", memoryMiB: 23028),
        ])
    }

    @Test func configurationWinsAndNoneMeansCPUOnly() async {
        let configured = await GPUInventory.detect(configured: [GPU(index: 0, memoryMiB: 1000)], cpuSlots: 2)
        #expect(configured.source == .configuration)
        #expect(configured.gpus.count == 1)
    }
}

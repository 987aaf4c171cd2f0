import Foundation
import Metrics
import SDBoxCore

/// The scheduler's figures, through swift-metrics (Prometheus in `sdbox serve`): tasks by outcome, task
/// run time and latency per model, queue depth per model, workers by state and tier, cold starts, parks,
/// reloads, evictions, GPU memory planned against total, system RAM taken by parked workers, and each
/// remote worker's state, tasks served and probe latency.
struct SchedulerMetrics: Sendable {
    /// Models whose queue depth was reported, so that a queue that empties is set back to zero.
    var modelsSeen: Set<String> = []
    /// The checkpoint each remote worker was last reported holding, so that the old one is set to zero.
    var remoteCheckpoints: [String: String] = [:]

    func taskFinished(_ task: TaskRecord) {
        Counter(label: "sdbox_tasks_total", dimensions: [("model", task.model), ("state", task.state.rawValue)]).increment()
        // Usage by user and model: what `GET /admin/usage` adds up from the records.
        let usage = [("user", task.user), ("model", task.model)]
        Counter(label: "sdbox_usage_images_total", dimensions: usage).increment(by: task.result?.images.count ?? 0)
        Counter(label: "sdbox_usage_pixel_steps_total", dimensions: usage).increment(by: task.pixelSteps)
        FloatingPointCounter(label: "sdbox_usage_worker_seconds_total", dimensions: usage).increment(by: task.workerSeconds)
        guard let finished = task.finishedAt else { return }
        Timer(label: "sdbox_task_latency_seconds", dimensions: [("model", task.model)])
            .recordNanoseconds(Int64(finished.timeIntervalSince(task.createdAt) * 1e9))
        if let started = task.startedAt {
            Timer(label: "sdbox_task_run_seconds", dimensions: [("model", task.model)])
                .recordNanoseconds(Int64(finished.timeIntervalSince(started) * 1e9))
        }
    }

    /// A progress call to a worker (many polls of one task share one call).
    func workerProgressCalled(model: String) {
        Counter(label: "sdbox_worker_progress_calls_total", dimensions: [("model", model)]).increment()
    }

    /// How many task changes wait in memory for disk space.
    func changesWaitingForDisk(_ count: Int) {
        Gauge(label: "sdbox_task_changes_waiting_for_disk").record(count)
    }

    func workerStarted(model: String) {
        Counter(label: "sdbox_worker_cold_starts_total", dimensions: [("model", model)]).increment()
    }

    func workerParked(model: String) {
        Counter(label: "sdbox_worker_parks_total", dimensions: [("model", model)]).increment()
    }

    func workerReloaded(model: String) {
        Counter(label: "sdbox_worker_reloads_total", dimensions: [("model", model)]).increment()
    }

    func workerStopped(reason: DispatchPlanner.StopReason) {
        let name = reason == .idle ? "sdbox_worker_idle_stops_total" : "sdbox_worker_evictions_total"
        Counter(label: name, dimensions: [("reason", reason.metricName)]).increment()
    }

    /// Sets the gauges from the planner's view.
    mutating func record(_ planner: DispatchPlanner, inventory: GPUInventory) {
        let depths = planner.queueDepths
        modelsSeen.formUnion(depths.keys)
        for model in modelsSeen {
            Gauge(label: "sdbox_queue_depth", dimensions: [("model", model)]).record(depths[model] ?? 0)
        }
        var states: [WorkerState: Int] = Dictionary(uniqueKeysWithValues: WorkerState.allCases.map { ($0, 0) })
        var tiers: [WorkerTier: Int] = [.gpu: 0, .ram: 0]
        for worker in planner.workers.values {
            states[worker.state, default: 0] += 1
            if worker.state != .stopping { tiers[worker.tier, default: 0] += 1 }
        }
        for (state, count) in states {
            Gauge(label: "sdbox_workers", dimensions: [("state", state.rawValue)]).record(count)
        }
        for (tier, count) in tiers {
            Gauge(label: "sdbox_workers_by_tier", dimensions: [("tier", tier.rawValue)]).record(count)
        }
        Gauge(label: "sdbox_host_memory_parked_mib").record(planner.parkedMemory)
        Gauge(label: "sdbox_queue_paused", dimensions: [("model", "*")]).record(planner.pause.all ? 1 : 0)
        for model in modelsSeen.union(planner.pause.models) {
            Gauge(label: "sdbox_queue_paused", dimensions: [("model", model)]).record(planner.pause.holds(model) ? 1 : 0)
        }
        // One set of figures per server, over its slots.
        let servers = Dictionary(grouping: planner.workers.values.filter { $0.remote != nil }) { $0.remote?.settings.name ?? "" }
        for (serverName, slots) in servers {
            guard let first = slots.min(by: { $0.id < $1.id }), let remote = first.remote else { continue }
            let name = [("name", serverName)]
            Gauge(label: "sdbox_remote_worker_up", dimensions: name).record(slots.contains { $0.state != .down } ? 1 : 0)
            Gauge(label: "sdbox_remote_worker_tasks_served", dimensions: name).record(slots.reduce(0) { $0 + $1.tasksServed })
            if let latency = remote.lastProbe?.latencyMilliseconds {
                Gauge(label: "sdbox_remote_worker_probe_milliseconds", dimensions: name).record(latency)
            }
            let holding = first.state == .down ? "" : first.model
            if let previous = remoteCheckpoints[remote.settings.name], previous != holding, !previous.isEmpty {
                Gauge(label: "sdbox_remote_worker_checkpoint", dimensions: name + [("model", previous)]).record(0)
            }
            if !holding.isEmpty { Gauge(label: "sdbox_remote_worker_checkpoint", dimensions: name + [("model", holding)]).record(1) }
            remoteCheckpoints[remote.settings.name] = holding
        }
        Gauge(label: "sdbox_host_memory_budget_mib").record(planner.hostMemoryMiB)
        let reserved = planner.reservedMemory
        for gpu in inventory.gpus {
            Gauge(label: "sdbox_gpu_memory_planned_mib", dimensions: [("gpu", "\(gpu.index)")]).record(reserved[gpu.index, default: 0])
            Gauge(label: "sdbox_gpu_memory_total_mib", dimensions: [("gpu", "\(gpu.index)")]).record(gpu.memoryMiB)
        }
    }
}

extension DispatchPlanner.StopReason {
    /// The reason as a metric label value.
    var metricName: String {
        switch self {
        case .idle: "idle"
        case .makeRoom: "make_room"
        case .fairness: "fairness"
        }
    }
}

import Foundation
import Logging
import Metrics
import SDBoxCore
import Scheduler
import ServiceLifecycle
import Storage

/// This box as a member of a fleet: boxes that share one PostgreSQL database (and a folder) and serve as
/// one. Every box takes requests; each runs the tasks it claims from the one queue.
///
/// - **Claims**: whenever this box has room (``Scheduler/claimRoom()``: an idle worker or a free slot) and
///   the queue may hold work (a `queued` notice came, or the periodic look), it claims tasks one at a time
///   (``PostgresTaskClaims/claim(_:claimSeconds:)``: past the fairness bound first, then models idle or warm
///   here, then models no box serves, oldest first; never a model whose pool has all its `maxInstances`
///   on other boxes) and queues them in its scheduler.
/// - **Leases**: every third of `fleet.claimSeconds` it renews its claims and its heartbeat (with its
///   ``NodeReport``), reads the other boxes' reports (the workers each model has elsewhere, for the
///   pools' caps), and gives back to the queue the tasks of boxes whose claims expired.
/// - **Notices** (``FleetNotice``, LISTEN/NOTIFY): a task's change wakes whoever waits for it here (sync
///   callers, streams); progress of tasks running here is announced each second and others' is kept for
///   polls; a cancel for a task this box runs is carried out here.
/// - **Start and stop**: at start it gives back what it held before it stopped (a running task counting
///   its attempt); at graceful stop, after the scheduler stopped, it gives back what it still holds.
public actor FleetMember: Service {
    let claims: PostgresTaskClaims
    let notifications: PostgresNotifications
    let lease: PostgresNodeLease
    let usage: PostgresUnfinishedUsage
    let usageElsewhere: UsageElsewhere
    let scheduler: Scheduler
    let tasks: any TaskStore
    let settings: FleetSettings
    let maxAttempts: Int
    let fairnessSeconds: Double
    let logger: Logger

    /// Whether the queue may hold a task this box could claim (cleared when a claim finds none).
    var queueMayHaveWork = true
    /// Whether a claim round runs, and whether another was asked for meanwhile.
    var claiming = false
    var claimAgain = false
    /// What the other live boxes run: workers per model.
    var workersElsewhere: [String: Int] = [:]
    /// The other live boxes as last reported.
    var otherLiveNodes: [FleetNode] = []
    /// Models whose pools need a bigger GPU than this box has: their tasks are left to the other boxes.
    var unservableHere: Set<String> = []
    /// The progress last announced of each task running here.
    var announced: [String: A1111.Progress] = [:]
    /// Who hears of changed tasks (a task's id; nil when any may have changed).
    var taskChangeObservers: [@Sendable (String?) async -> Void] = []
    /// What reads its settings again with each heartbeat (another box may have changed them).
    var settingsObservers: [@Sendable () async throws -> Void] = []
    /// Who hears of tasks another box brought to their final state.
    var endedElsewhereObservers: [@Sendable (TaskRecord) async -> Void] = []
    /// Called with each final task whose pending webhook this box took over from a box that stopped.
    var webhookTakeoverObservers: [@Sendable (TaskRecord) async -> Void] = []

    public init(
        links: DataStores.FleetLinks, scheduler: Scheduler, tasks: any TaskStore, settings: FleetSettings, maxAttempts: Int,
        fairnessSeconds: Double, logger: Logger
    ) {
        self.claims = links.claims
        self.notifications = links.notifications
        self.lease = links.lease
        self.usage = links.usage
        self.usageElsewhere = UsageElsewhere(links.usage)
        self.scheduler = scheduler
        self.tasks = tasks
        self.settings = settings
        self.maxAttempts = maxAttempts
        self.fairnessSeconds = fairnessSeconds
        self.logger = logger
    }

    nonisolated var node: String { claims.node }

    /// Calls `body` with each heartbeat, for settings kept in memory that another box may change.
    public func observeSettings(_ body: @escaping @Sendable () async throws -> Void) {
        settingsObservers.append(body)
    }

    /// Calls `body` with each task another box brought to its final state (its record read once), e.g. for
    /// the quotas' tally, which counts what every box's tasks used.
    public func observeTasksEndedElsewhere(_ body: @escaping @Sendable (TaskRecord) async -> Void) {
        endedElsewhereObservers.append(body)
    }

    /// Calls `body` with each final task whose pending webhook this box took over, at a heartbeat, from a
    /// box that stopped renewing its row (the deliverer, ``PostgresTaskClaims/takeOverWebhooks(liveSeconds:)``).
    public func observeWebhookTakeovers(_ body: @escaping @Sendable (TaskRecord) async -> Void) {
        webhookTakeoverObservers.append(body)
    }

    /// Calls `body` with the id of each task whose state changed on any box (nil after notices may have
    /// been missed), e.g. for live progress streams.
    public func observeTaskChanges(_ body: @escaping @Sendable (String?) async -> Void) {
        taskChangeObservers.append(body)
    }

    // MARK: Service

    public func run() async throws {
        await scheduler.forwardCancels { [weak self] id in try await self?.cancelElsewhere(id) }
        await giveBackOwnClaims(reason: "start")
        await withDiscardingTaskGroup { group in
            group.addTask { await self.notifications.listen { notice in await self.handle(notice) } }
            group.addTask {
                for await _ in self.scheduler.roomSignals { await self.claim() }
            }
            group.addTask {
                while !Task.isCancelled {
                    await self.keepUp()
                    try? await Task.sleep(for: .seconds(self.settings.renewSeconds))
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    await self.announceProgress()
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        // The scheduler has stopped (it stops before this service): what this box holds goes back.
        await giveBackOwnClaims(reason: "stop")
    }

    /// Counts in the users' shares of the queue (``UsageLedger``) the unfinished tasks this box accepted
    /// before it stopped: each box counts those it accepted, and reads the others' (``usageElsewhere(of:)``).
    /// Called before the box takes requests.
    public nonisolated func countTasksAcceptedBeforeStart() async throws {
        for task in try await usage.acceptedHere() {
            scheduler.runner.usage.add(task: task.id, user: task.user, bytes: task.bytes)
        }
    }

    /// What the unfinished tasks of `user` that other boxes accepted take, counted up to `maxTasks`, for
    /// the per-user queue limits (read at most once a second per user: ``UsageElsewhere``).
    public nonisolated func usageElsewhere(of user: String, upTo maxTasks: Int) async throws -> ActiveUsage {
        try await usageElsewhere.of(user, upTo: maxTasks)
    }

    /// Gives back every claim this box holds (its tasks queued again, a running one counting its attempt).
    func giveBackOwnClaims(reason: String) async {
        do {
            let released = try await release(expiredOrOf: node)
            if released > 0 { logger.info("fleet: gave back this box's tasks at \(reason)", metadata: ["count": "\(released)"]) }
        } catch {
            logger.error("fleet: could not give back this box's tasks at \(reason); their claims expire in \(settings.claimSeconds) s", metadata: [
                "error": "\(ErrorSummary(error))"
            ])
        }
    }

    /// Gives back the expired claims, and with `node` every claim of that box (``PostgresTaskClaims/release(expiredOrOf:maxAttempts:)``);
    /// a task that failed for it is announced here. Returns how many tasks were given back.
    func release(expiredOrOf node: String?) async throws -> Int {
        let released = try await claims.release(expiredOrOf: node, maxAttempts: maxAttempts)
        for task in released where task.state.isFinal { scheduler.runner.announceEnded(task) }
        return released.count
    }

    // MARK: Claims

    /// Claims tasks while this box has room and the queue may hold some; one round at a time.
    func claim() async {
        guard queueMayHaveWork else { return }
        guard !claiming else {
            claimAgain = true
            return
        }
        claiming = true
        defer { claiming = false }
        repeat {
            claimAgain = false
            await claimWhileRoom()
        } while claimAgain && queueMayHaveWork
    }

    func claimWhileRoom() async {
        while !Task.isCancelled {
            let room = await scheduler.claimRoom()
            guard room.count > 0 else { return }
            var preferences = PostgresTaskClaims.Preferences()
            preferences.idle = room.idleModels
            preferences.warm = room.warmModels
            preferences.servedElsewhere = workersElsewhere.filter { $0.value > 0 }.map(\.key).sorted()
            preferences.paused = room.pausedModels
            preferences.fairnessSeconds = fairnessSeconds
            var excluded: [String] = []
            for (model, count) in workersElsewhere where !room.warmModels.contains(model) {
                if await scheduler.settings(ofPool: model).maxInstances ?? 1 <= count { excluded.append(model) }
            }
            preferences.excluded = (excluded + unservableHere).sorted()
            do {
                guard let task = try await claims.claim(preferences, claimSeconds: settings.claimSeconds) else {
                    queueMayHaveWork = false
                    return
                }
                if await scheduler.cannotServe(task.model), await anotherBoxCouldServe(task.model) {
                    // Another box has a bigger GPU: the task goes back, and this box claims none of its model.
                    // (When no box has one, it stays here and fails with the reason, as on a single box.)
                    unservableHere.insert(task.model)
                    try await claims.giveBack([task.id])
                    logger.info("fleet: left a model to boxes with bigger GPUs", metadata: ["model": "\(task.model)"])
                    continue
                }
                logger.debug("fleet: claimed a task", metadata: ["task": "\(task.id)", "model": "\(task.model)"])
                await scheduler.submit(task)
            } catch {
                logger.warning("fleet: could not claim a task", metadata: ["error": "\(ErrorSummary(error))"])
                return
            }
        }
    }

    /// Whether another live box reported a GPU with the memory `model`'s pool needs (or runs without GPUs,
    /// or has a remote worker), so that a task this box cannot place is better left to it.
    func anotherBoxCouldServe(_ model: String) async -> Bool {
        let need = await scheduler.settings(ofPool: model).gpuMemoryMiB ?? 0
        // The boxes as they are now, not as the last heartbeat saw them: a box that started since is not in
        // that view, and a task failed for want of the GPU it has would be lost work. (Asked rarely: only
        // for a task this box cannot place.)
        let others = (try? await nodes().filter { $0.live && $0.name != node }) ?? otherLiveNodes
        return others.contains { other in
            guard let report = other.report else { return true }
            return report.gpus.isEmpty || report.gpus.contains { $0.memoryMiB >= need } || report.workers.contains { $0.remote != nil }
        }
    }

    // MARK: Leases and reports

    /// Renews claims and heartbeat, reads the other boxes' reports, gives back expired claims, and looks
    /// for work (a notice may have been missed).
    func keepUp() async {
        do {
            try await claims.renew(claimSeconds: settings.claimSeconds)
            try await scheduler.reloadSettings()
            for refresh in settingsObservers { try await refresh() }
            let report = NodeReport(
                workers: await scheduler.workers(), gpus: await scheduler.gpus(), maxInstances: scheduler.maxInstances,
                queues: await scheduler.queueDepths()
            )
            try await lease.heartbeat(report: String(decoding: try JSONEncoder().encode(report), as: UTF8.self))
            let fleet = try await nodes()
            let live = fleet.filter(\.live).count
            Gauge(label: "sdbox_fleet_nodes", dimensions: [("state", "live")]).record(live)
            Gauge(label: "sdbox_fleet_nodes", dimensions: [("state", "not_answering")]).record(fleet.count - live)
            otherLiveNodes = fleet.filter { $0.live && $0.name != node }
            var elsewhere: [String: Int] = [:]
            for other in otherLiveNodes {
                for worker in other.report?.workers ?? [] where worker.state != .stopping && worker.state != .down {
                    elsewhere[worker.model, default: 0] += 1
                }
            }
            workersElsewhere = elsewhere
            // Pools' settings may have changed: models left to other boxes are looked at again.
            unservableHere = []
            await scheduler.setWorkersElsewhere(elsewhere)
            let released = try await release(expiredOrOf: nil)
            if released > 0 {
                logger.warning("fleet: took back tasks whose box stopped renewing its claims", metadata: ["count": "\(released)"])
                Counter(label: "sdbox_fleet_tasks_taken_back_total").increment(by: released)
            }
            let webhooks = try await claims.takeOverWebhooks(liveSeconds: settings.claimSeconds)
            if !webhooks.isEmpty {
                logger.warning("fleet: took over webhooks whose box stopped renewing its row", metadata: ["count": "\(webhooks.count)"])
                for task in webhooks {
                    for observer in webhookTakeoverObservers { await observer(task) }
                }
            }
        } catch {
            logger.warning("fleet: could not renew this box's claims and heartbeat", metadata: ["error": "\(ErrorSummary(error))"])
        }
        queueMayHaveWork = true
        await claim()
    }

    /// Every box of the fleet, this one included, with its last report.
    public func nodes() async throws -> [FleetNode] {
        try await lease.nodes().map { row in
            FleetNode(
                name: row.name, startedAt: row.startedAt, heartbeatAt: row.heartbeatAt, live: row.live,
                report: row.report.flatMap { try? JSONDecoder().decode(NodeReport.self, from: Data($0.utf8)) }
            )
        }
    }

    // MARK: Notices

    func handle(_ notice: FleetNotice) async {
        switch notice.event {
        case .queued:
            queueMayHaveWork = true
            await claim()
        case .task:
            guard let id = notice.id, let state = notice.state else { return }
            for observer in taskChangeObservers { await observer(id) }
            if state != .running { scheduler.forgetProgressElsewhere(of: id) }
            if state.isFinal, notice.node != node { await endedElsewhere(id) }
        case .progress:
            guard let id = notice.id, let progress = notice.progress, notice.node != node else { return }
            scheduler.noteProgressElsewhere(progress, of: id)
        case .cancel:
            guard let id = notice.id, notice.node == node else { return }
            _ = try? await scheduler.cancel(id)
        case .resync:
            for observer in taskChangeObservers { await observer(nil) }
            queueMayHaveWork = true
            // Notices missed meanwhile: a task someone waits for here may have ended, and so may one this box
            // counts in its user's share of the queue.
            for id in scheduler.runner.waitedTaskIDs() {
                if let task = try? await tasks.get(id), task.state.isFinal { scheduler.runner.taskEndedElsewhere(task) }
            }
            for id in (try? await usage.ended(among: scheduler.runner.usage.countedTaskIDs())) ?? [] {
                scheduler.runner.usage.withdraw(task: id)
            }
            await claim()
        }
    }

    /// A task another box brought to its final state: read once, for whoever waits here and the observers.
    func endedElsewhere(_ id: String) async {
        guard let task = try? await tasks.get(id), task.state.isFinal else { return }
        scheduler.runner.taskEndedElsewhere(task)
        for observer in endedElsewhereObservers { await observer(task) }
    }

    /// Announces the progress of the tasks running here that changed since last announced.
    func announceProgress() async {
        var now: [String: A1111.Progress] = [:]
        for id in scheduler.runner.runningTaskIDs() {
            guard case .running(var report?) = await scheduler.progress(of: id) else { continue }
            report.current_image = nil
            now[id] = report
            guard announced[id] != report else { continue }
            try? await notifications.send(FleetNotice(.progress, id: id, node: node, progress: report))
        }
        announced = now
    }

    /// A cancel of a task this box neither queues nor runs: a queued task no box holds is cancelled here;
    /// one another box holds is cancelled by that box (asked with a notice). Returns the task as it stands.
    func cancelElsewhere(_ id: String) async throws -> TaskRecord? {
        guard let task = try await tasks.get(id), !task.state.isFinal else { return try await tasks.get(id) }
        if let holder = try await claims.holder(of: id), holder != node {
            try await notifications.send(FleetNotice(.cancel, id: id, node: holder))
            return task
        }
        guard task.state == .queued else { return task }
        return try await scheduler.runner.cancelQueued(id)
    }
}

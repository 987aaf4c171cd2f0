import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SDBoxCore
import Storage

extension Scheduler {
    /// The longest wait between two probes of a remote worker that is down.
    static let remoteProbeMaxBackoff: Duration = .seconds(60)

    /// Puts the remote workers of the configuration and those added at run time (stored in the catalogue)
    /// in the worker table, down until their first probe answers, and starts watching each.
    func addRemoteWorkers() async {
        for settings in configuration.remoteWorkers { insertRemote(settings) }
        do {
            for settings in try await catalog.remoteWorkers() where !remoteWorkerNames.contains(settings.name) { insertRemote(settings) }
        } catch {
            logger.error("could not read the remote workers added at run time", metadata: ["error": "\(error)"])
        }
    }

    /// The remote workers in the table by name: one per slot of each server, in slot order.
    var remoteWorkers: [String: [RemoteWorker]] {
        var found: [String: [RemoteWorker]] = [:]
        for worker in planner.workers.values { if let remote = worker.remote { found[remote.settings.name, default: []].append(remote) } }
        return found.mapValues { $0.sorted { $0.slot < $1.slot } }
    }

    var remoteWorkerNames: Set<String> { Set(remoteWorkers.keys) }

    /// Adds a server's slots (`maxTasks` workers) to the table and starts watching each.
    func insertRemote(_ settings: RemoteWorkerSettings) {
        for slot in 1...settings.taskSlots {
            let id = planner.addRemote(now: Date())
            let remote = RemoteWorker(id: id, settings: settings, slot: slot)
            planner.attach(remote, to: id)
            jobs?.yield(.probe(remote))
        }
        logger.info("remote worker added", metadata: ["name": "\(settings.name)", "url": "\(settings.displayURL)", "maxTasks": "\(settings.taskSlots)"])
    }

    /// Every remote worker's settings, credentials masked, and whether it comes from the configuration
    /// file (then it cannot be changed at run time).
    public func remoteWorkerSettings() -> [(settings: RemoteWorkerSettings, configured: Bool)] {
        let configured = Set(configuration.remoteWorkers.map(\.name))
        return remoteWorkers.values.compactMap(\.first).sorted { $0.id < $1.id }.map { ($0.settings.masked, configured.contains($0.settings.name)) }
    }

    /// Adds a remote worker at run time, or replaces the one added under the same name, and keeps it
    /// for the next start.
    public func addRemoteWorker(_ settings: RemoteWorkerSettings) async throws {
        if let problem = settings.problem { throw RemoteWorkerError.invalid(problem) }
        if configuration.remoteWorkers.contains(where: { $0.name == settings.name }) {
            throw RemoteWorkerError.configured(settings.name)
        }
        var stored = try await catalog.remoteWorkers().filter { $0.name != settings.name }
        stored.append(settings)
        try await catalog.saveRemoteWorkers(stored)
        if remoteWorkerNames.contains(settings.name) { retireRemote(named: settings.name) }
        insertRemote(settings)
        dispatch()
    }

    /// Removes a remote worker added at run time; its task, if it runs one, finishes first.
    public func removeRemoteWorker(named name: String) async throws {
        if configuration.remoteWorkers.contains(where: { $0.name == name }) { throw RemoteWorkerError.configured(name) }
        let stored = try await catalog.remoteWorkers()
        guard stored.contains(where: { $0.name == name }) || remoteWorkerNames.contains(name) else { throw RemoteWorkerError.notFound(name) }
        try await catalog.saveRemoteWorkers(stored.filter { $0.name != name })
        retireRemote(named: name)
        dispatch()
    }

    /// Takes a server's slots out of the table: at once when idle or down, when their task ends when busy.
    func retireRemote(named name: String) {
        guard let slots = remoteWorkers[name], let first = slots.first else { return }
        logger.info("remote worker removed", metadata: ["name": "\(name)", "url": "\(first.settings.displayURL)"])
        for remote in slots {
            if planner.workers[remote.id]?.state == .busy {
                planner.markStopping(remote.id, now: Date())
            } else {
                planner.workerGone(remote.id)
            }
        }
    }

    /// Probes a remote worker for as long as sdbox runs: while it is down, with a backoff from one second
    /// doubling up to ``remoteProbeMaxBackoff``; while it is idle, every `livenessSeconds`, to follow its
    /// checkpoint and notice it going away. A busy one is watched by its task's run.
    func watchRemote(_ remote: RemoteWorker) async {
        var backoff: Duration = .seconds(1)
        while !Task.isCancelled, planner.workers[remote.id]?.remote === remote {
            let state = planner.workers[remote.id]?.state
            if state == .busy || state == .starting {
                try? await Task.sleep(for: .seconds(configuration.livenessSeconds))
                continue
            }
            switch await probe(remote) {
            case .success(let probe):
                remote.probed(probe)
                if state == .down {
                    logger.info("remote worker answers", metadata: ["name": "\(remote.settings.name)", "checkpoint": "\(probe.model ?? "none it may serve")"])
                }
                planner.remoteAnswered(remote.id, model: probe.model ?? "", switchable: remote.switchable, now: Date())
                backoff = .seconds(1)
                dispatch()
                try? await Task.sleep(for: .seconds(configuration.livenessSeconds))
            case .failure(let failure):
                let first = remote.failed(failure.description)
                if state == .ready || first {
                    logger.warning(
                        "remote worker does not answer", metadata: ["name": "\(remote.settings.name)", "url": "\(remote.settings.displayURL)", "error": "\(failure)"]
                    )
                }
                if state == .ready {
                    planner.remoteDown(remote.id, now: Date())
                    dispatch()
                }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, Self.remoteProbeMaxBackoff)
            }
        }
    }

    /// Asks a remote worker which checkpoint it holds (`/sdapi/v1/options`) and which it has
    /// (`/sdapi/v1/sd-models`); fails with why when it does not answer both as A1111 does.
    nonisolated func probe(_ remote: RemoteWorker) async -> Result<RemoteWorker.Probe, RemoteWorker.ProbeFailure> {
        let started = ContinuousClock.now
        let client = runner.client
        let options: Data
        let models: Data
        do throws(WorkerCallError) {
            options = try await client.call(remote.endpoint, method: .GET, path: "/sdapi/v1/options", timeout: .seconds(10))
            models = try await client.call(remote.endpoint, method: .GET, path: "/sdapi/v1/sd-models", timeout: .seconds(10))
        } catch {
            return .failure(RemoteWorker.ProbeFailure(description: "\(error)"))
        }
        guard let current = (try? JSONValue(parsing: options))?["sd_model_checkpoint"]?.stringValue else {
            return .failure(RemoteWorker.ProbeFailure(description: "its /sdapi/v1/options has no sd_model_checkpoint: is it an A1111-compatible API?"))
        }
        let checkpoints = ((try? JSONValue(parsing: models))?.arrayValue ?? []).compactMap { $0["title"]?.stringValue }.map(RemoteWorker.modelName)
        let model = RemoteWorker.modelName(ofCheckpoint: current)
        let allowed = remote.settings.models.map { $0.contains(model) } ?? true
        return .success(RemoteWorker.Probe(
            model: allowed && !model.isEmpty ? model : nil, checkpoints: checkpoints, latencyMilliseconds: started.duration(to: .now).seconds * 1000
        ))
    }

    /// Has an idle remote worker load `model`'s checkpoint (the planner's `switchCheckpoint`), counted as
    /// a cold start; a worker that cannot is down until a probe finds it again.
    func switchCheckpoint(of workerID: Int, to model: String) {
        guard let remote = planner.workers[workerID]?.remote else { return }
        logger.info("switching a remote worker's checkpoint", metadata: ["name": "\(remote.settings.name)", "model": "\(model)"])
        models[model, default: ModelHistory()].coldStarts += 1
        metrics.workerStarted(model: model)
        let client = runner.client
        let body = try? JSONValue.object(["sd_model_checkpoint": .string(model)]).encoded()
        Task {
            let (failure, seconds) = await client.post(remote.endpoint, path: "/sdapi/v1/options", body: body, timeout: .seconds(600))
            await self.switchEnded(remote, model: model, failure: failure, seconds: seconds)
        }
    }

    func switchEnded(_ remote: RemoteWorker, model: String, failure: WorkerCallError?, seconds: Double) {
        guard planner.workers[remote.id]?.state == .starting else { return }
        if let failure {
            logger.warning("remote worker could not switch checkpoints", metadata: ["name": "\(remote.settings.name)", "model": "\(model)", "error": "\(failure)"])
            planner.remoteDown(remote.id, now: Date())
        } else {
            remote.switched(to: model)
            planner.workerReady(remote.id, now: Date())
            models[model, default: ModelHistory()].pace.recordLoad(seconds: seconds)
            logger.info("remote worker switched checkpoints", metadata: ["name": "\(remote.settings.name)", "model": "\(model)", "seconds": "\(seconds)"])
        }
        dispatch()
    }
}

/// Why a remote worker cannot be added or removed at run time.
public enum RemoteWorkerError: Error, Sendable, CustomStringConvertible {
    case invalid(String)
    /// It comes from the configuration file, which only an edit of the file changes.
    case configured(String)
    case notFound(String)

    public var description: String {
        switch self {
        case .invalid(let problem): problem
        case .configured(let name): "the remote worker '\(name)' comes from the configuration file: change it there"
        case .notFound(let name): "no remote worker is named '\(name)'"
        }
    }
}

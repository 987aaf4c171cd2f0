import Foundation
import Logging
import SDBoxCore
import Storage

extension Scheduler {
    /// What is paused now.
    public func queuePause() -> QueuePause { planner.pause }

    /// Pauses the whole queue, or `model`'s: its tasks are accepted and kept, none starts; running ones
    /// finish. Kept across restarts.
    public func pause(model: String? = nil) async throws {
        var pause = planner.pause
        if let model {
            if !pause.models.contains(model) { pause.models.append(model) }
        } else {
            pause.all = true
        }
        try await setPause(pause)
    }

    /// Resumes `model`'s queue, or, without a model, every queue (the whole box and each paused model).
    public func resume(model: String? = nil) async throws {
        var pause = planner.pause
        if let model {
            pause.models.removeAll { $0 == model }
        } else {
            pause = QueuePause()
        }
        try await setPause(pause)
    }

    func setPause(_ pause: QueuePause) async throws {
        try await catalog.saveQueuePause(pause)
        planner.pause = pause
        logger.notice("queue pause changed", metadata: ["all": "\(pause.all)", "models": "\(pause.models)"])
        dispatch()
    }

    /// Moves a queued task to the front of its model's queue: it gets the highest priority across users
    /// (100, kept in its record, so that it stays there after a restart). Returns its task record, or nil
    /// when it is not queued.
    public func moveToFront(_ id: String) async throws -> TaskRecord? {
        guard planner.position(of: id) != nil else { return nil }
        let task = try await runner.persist(id) {
            $0.priority = 100
            $0.priorityAcrossUsers = true
        }
        if planner.remove(id) { requeue(task) }
        dispatch()
        return task
    }
}

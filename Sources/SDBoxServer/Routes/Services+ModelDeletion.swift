import Appliance
import HTTPTypes
import SDBoxCore
import Scheduler

extension Services {
    /// Deletes a model as both delete routes do (`DELETE /admin/models/{type}/{name}`, the original's
    /// `DELETE /models/{name}`): a checkpoint with tasks queued or running here is a 409 unless `force`;
    /// `delete` removes its record (or keeps it marked deleted), its pool going in the same write; then this
    /// box lets go of the pool, its queued and running tasks failing with the reason (other boxes of a fleet
    /// do the same when they read the change).
    func deleteModel(_ type: ModelType, named name: String, force: Bool, _ delete: () async throws -> Void) async throws {
        if type == .stableDiffusion, !force, await scheduler.hasWork(model: name) {
            throw APIError(.conflict, "model in use", detail: "tasks for \(name) are queued or running; add ?force=true to fail them and delete")
        }
        try await delete()
        if type == .stableDiffusion {
            await scheduler.dropPool(model: name, reason: "the model \(name) was deleted", stopRunning: true)
        }
    }
}

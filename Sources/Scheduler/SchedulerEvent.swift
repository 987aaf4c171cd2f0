import SDBoxCore

/// What the scheduler and its ``TaskRunner`` tell the rest of sdbox, in the order it happened, on one
/// stream (``Scheduler/events``): model registry, thumbnails and webhooks each react to their part.
public enum SchedulerEvent: Sendable {
    /// A model's state changed: `loading` when its first worker starts, `loaded` while a worker holds it,
    /// `unloaded` when none does, `failed` (with the workers' output) when its workers fail to start.
    case modelStatus(model: String, status: ModelStatus, error: String?)
    /// A task reached a final state (succeeded, failed or cancelled).
    case taskFinished(TaskRecord)
}

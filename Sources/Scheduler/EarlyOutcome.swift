import Foundation

/// What a caller of the A1111 API waiting for its task is handed before the task's outcome is recorded:
/// the worker's answer, its body as the worker sent it, which is what A1111 answers (the caller takes
/// the images themselves). It is handed over only when sdbox has nothing to add to it (no LoRA was
/// missing, say); the images are stored and the outcome recorded meanwhile, and the task's record shows
/// it within milliseconds. If sdbox dies in between, the task runs again at the next start.
public struct EarlyOutcome: Sendable {
    /// The worker's answer to a generation or extras task.
    public let answer: Data
}

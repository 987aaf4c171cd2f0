import Synchronization

/// The encoded answers of final tasks' status reads (`/tasks/{id}/progress`, `/tasks/{id}/result`), kept
/// briefly: a final task's answer changes only with its webhook's delivery and, for signed URLs, with the
/// base URL and the expiry second, which are part of the key. So the clients polling a finished task
/// cost one encoding a second between them, not one each. Bounded; emptied when full.
final class FinalAnswerCache: Sendable {
    struct Key: Hashable {
        let route: String
        let taskID: String
        /// What else the answer depends on: the base URL, the expiry second, the webhook's state.
        let variant: String
    }

    let capacity: Int
    private let answers = Mutex<[Key: [UInt8]]>([:])

    init(capacity: Int = 4096) {
        self.capacity = capacity
    }

    /// The answer for `key`, made by `make` when not kept.
    func answer(_ key: Key, make: () async throws -> [UInt8]) async rethrows -> [UInt8] {
        if let kept = answers.withLock({ $0[key] }) { return kept }
        let made = try await make()
        answers.withLock { answers in
            if answers.count >= capacity { answers.removeAll(keepingCapacity: true) }
            answers[key] = made
        }
        return made
    }
}

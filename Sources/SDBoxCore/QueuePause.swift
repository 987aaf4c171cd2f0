/// What an admin has paused (`POST /admin/queue/pause`): the whole box's queue, or some models' pools. A
/// paused queue accepts and keeps tasks and starts none; running tasks finish. Kept across restarts.
public struct QueuePause: Codable, Sendable, Equatable {
    /// Whether every queue is paused.
    public var all: Bool
    /// Models whose queues are paused, besides `all`.
    public var models: [String]

    public init(all: Bool = false, models: [String] = []) {
        self.all = all
        self.models = models
    }

    /// Whether `model`'s queue starts nothing.
    public func holds(_ model: String) -> Bool { all || models.contains(model) }
}

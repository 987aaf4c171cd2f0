import SDBoxCore

/// What the scheduler has learnt of a model: its pace, its failed starts in a row, and the status it last
/// reported.
struct ModelHistory: Sendable {
    var pace = ModelPace()
    var startFailures = 0
    var reportedStatus: ModelStatus?
}

/// A model's recent pace: how long its workers take to load and its tasks to run, as moving averages.
struct ModelPace: Sendable {
    var taskSeconds: Double?
    var loadSeconds: Double?

    mutating func recordTask(seconds: Double) { taskSeconds = Self.average(taskSeconds, seconds) }
    mutating func recordLoad(seconds: Double) { loadSeconds = Self.average(loadSeconds, seconds) }

    static func average(_ old: Double?, _ new: Double) -> Double {
        old.map { $0 * 0.8 + new * 0.2 } ?? new
    }
}

import SDBoxCore

/// What the scheduler has learnt of a model: its pace, its worker processes started, its failed starts in
/// a row, and the status it last reported.
struct ModelHistory: Sendable {
    var pace = ModelPace()
    var coldStarts = 0
    var startFailures = 0
    var reportedStatus: ModelStatus?
}

/// A model's recent pace: how long its workers take to load (started, or brought back from RAM) and its
/// tasks to run, as moving averages.
struct ModelPace: Sendable {
    var taskSeconds: Double?
    var loadSeconds: Double?
    var reloadSeconds: Double?

    mutating func recordTask(seconds: Double) { taskSeconds = Self.average(taskSeconds, seconds) }
    mutating func recordLoad(seconds: Double) { loadSeconds = Self.average(loadSeconds, seconds) }
    mutating func recordReload(seconds: Double) { reloadSeconds = Self.average(reloadSeconds, seconds) }

    static func average(_ old: Double?, _ new: Double) -> Double {
        old.map { $0 * 0.8 + new * 0.2 } ?? new
    }
}

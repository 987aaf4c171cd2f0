/// Live progress streams (`events`).
public struct EventSettings: Sendable, Equatable {
    /// How often live progress streams look at their tasks (`events.intervalMilliseconds`).
    public var intervalMilliseconds = 250

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        intervalMilliseconds = try section.integer("intervalMilliseconds", in: 10...60000) ?? intervalMilliseconds
        try section.finish()
    }
}

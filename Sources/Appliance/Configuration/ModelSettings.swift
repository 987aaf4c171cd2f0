/// Model files (`models`).
public struct ModelSettings: Sendable, Equatable {
    /// Largest model file accepted by upload (`models.maxUploadBytes`).
    public var maxUploadBytes: Int64 = 64 << 30

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        maxUploadBytes = Int64(try section.integer("maxUploadBytes", in: 1024...(1 << 50)) ?? Int(maxUploadBytes))
        try section.finish()
    }
}

import SDBoxCore

/// What one request and one user may ask for (`limits`).
public struct LimitSettings: Sendable, Equatable {
    /// Steps, sides, images and text of one generation (`limits.maxSteps`, `maxSide`, `maxImages`, `maxPromptBytes`).
    public var generation = GenerationLimits()
    /// Pixels one request may ask for: width × height × batch_size × n_iter (`limits.maxPixels`; not to be
    /// confused with `images.maxPixels`, the largest input image).
    public var maxRequestPixels = 64 << 20
    /// Tasks a user may have queued or running at once (`limits.maxQueuedPerUser`).
    public var maxQueuedPerUser = 1000
    /// Bytes the requests of one user's queued and running tasks may take in storage
    /// (`limits.maxQueuedBytesPerUser`).
    public var maxQueuedBytesPerUser = 256 << 20
    /// Requests a minute per API key; 0 for no limit (`limits.requestsPerMinute`).
    public var requestsPerMinute = 0
    /// Whether a prompt naming a LoRA the box lacks is refused with 400 (`limits.strictLoras`); by default
    /// the image is made without it and the miss is reported in `info`, as A1111 does.
    public var strictLoras = false

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        generation.maxSteps = try section.integer("maxSteps", in: 1...10000) ?? generation.maxSteps
        generation.maxSide = try section.integer("maxSide", in: 64...65536) ?? generation.maxSide
        generation.maxImages = try section.integer("maxImages", in: 1...1000) ?? generation.maxImages
        generation.maxPromptBytes = try section.integer("maxPromptBytes", in: 1024...(64 << 20)) ?? generation.maxPromptBytes
        requestsPerMinute = try section.integer("requestsPerMinute", in: 0...1_000_000) ?? requestsPerMinute
        maxQueuedPerUser = try section.integer("maxQueuedPerUser", in: 1...1_000_000) ?? maxQueuedPerUser
        maxQueuedBytesPerUser = try section.integer("maxQueuedBytesPerUser", in: 1 << 20...(1 << 40)) ?? maxQueuedBytesPerUser
        maxRequestPixels = try section.integer("maxPixels", in: 4096...(1 << 40)) ?? maxRequestPixels
        strictLoras = try section.boolean("strictLoras") ?? strictLoras
        try section.finish()
    }
}

/// How sdbox handles images (`images` in the configuration): input limits, thumbnails, retention and
/// the pool that runs post-processing.
public struct ImageSettings: Sendable, Equatable {
    /// Largest input image, width × height (default 4096 × 4096); larger inputs are refused with 400.
    public var maxPixels = 4096 * 4096
    /// Largest input image file in MiB (default 32), checked before it is decoded: a base64 image or
    /// stored key over it is refused with 413.
    public var maxInputMiB = 32
    /// Longest side of thumbnails, in pixels.
    public var thumbnailSide = 256
    /// JPEG quality of thumbnails, 1 to 100.
    public var thumbnailQuality = 85
    /// Days that finished tasks, their images and uploaded inputs are kept; 0 keeps them forever.
    public var retentionDays = 0
    /// How often the retention sweeper looks for what is too old.
    public var sweepIntervalMinutes = 60
    /// Free disk space the object store keeps in reserve: a write that would leave less fails as
    /// "disk full" (so LMDB and the logs still have room).
    public var minFreeDiskMiB = 100
    /// The checkpoint whose pool runs post-processing (`/extra_images`) requests that name none; the
    /// caller's default checkpoint when not set.
    public var postprocessingModel: String?

    public init() {}

    /// Reads the `images` section and refuses any other key.
    mutating func read(_ section: inout KeyReader) throws {
        maxPixels = try section.integer("maxPixels", in: 4096...(1 << 28)) ?? maxPixels
        maxInputMiB = try section.integer("maxInputMiB", in: 1...1024) ?? maxInputMiB
        thumbnailSide = try section.integer("thumbnailSide", in: 16...4096) ?? thumbnailSide
        thumbnailQuality = try section.integer("thumbnailQuality", in: 1...100) ?? thumbnailQuality
        retentionDays = try section.integer("retentionDays", in: 0...36500) ?? retentionDays
        sweepIntervalMinutes = try section.integer("sweepIntervalMinutes", in: 1...(7 * 24 * 60)) ?? sweepIntervalMinutes
        minFreeDiskMiB = try section.integer("minFreeDiskMiB", in: 0...(1 << 30)) ?? minFreeDiskMiB
        postprocessingModel = try section.string("postprocessingModel")
        try section.finish()
    }
}

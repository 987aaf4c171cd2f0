import Foundation

/// A JPEG thumbnail of an image: decoded (PNG through libpng, JPEG, WebP), shrunk with a box filter so its
/// longest side is at most `longestSide`, and encoded with libjpeg-turbo.
public struct Thumbnail: Sendable {
    public let jpeg: Data
    public let width: Int
    public let height: Int

    /// Makes the thumbnail of an image file. An image already inside the square keeps its size.
    ///
    /// - Parameters:
    ///   - longestSide: The most pixels of the thumbnail's width and height.
    ///   - quality: The JPEG quality, 1 to 100.
    ///   - maxPixels: The largest source image accepted.
    public init(of data: Data, longestSide: Int, quality: Int = 85, maxPixels: Int = 64 << 20) throws {
        let image = try ImageReader.decode(data, maxPixels: maxPixels)
        let size = image.size(fittingInside: longestSide)
        let small = image.resampled(width: size.width, height: size.height, filter: .box)
        self.jpeg = try JPEGCodec.encode(small, quality: quality)
        self.width = small.width
        self.height = small.height
    }
}

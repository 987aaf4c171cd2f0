/// An 8-bit RGB image in memory, rows top to bottom, no padding.
public struct PixelImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `width * height * 3` bytes.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "pixel buffer does not match the image size")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public init(width: Int, height: Int) {
        self.init(width: width, height: height, pixels: [UInt8](repeating: 0, count: width * height * 3))
    }

    /// The image scaled to a new size by nearest-neighbour sampling.
    public func resized(width newWidth: Int, height newHeight: Int) -> PixelImage {
        if newWidth == width && newHeight == height { return self }
        var out = [UInt8](repeating: 0, count: newWidth * newHeight * 3)
        for y in 0..<newHeight {
            let sy = min(height - 1, y * height / newHeight)
            for x in 0..<newWidth {
                let sx = min(width - 1, x * width / newWidth)
                let src = (sy * width + sx) * 3
                let dst = (y * newWidth + x) * 3
                out[dst] = pixels[src]
                out[dst + 1] = pixels[src + 1]
                out[dst + 2] = pixels[src + 2]
            }
        }
        return PixelImage(width: newWidth, height: newHeight, pixels: out)
    }
}

extension PixelImage {
    /// The part of the image inside a rectangle, which must lie within the image.
    public func cropped(x: Int, y: Int, width newWidth: Int, height newHeight: Int) -> PixelImage {
        precondition(x >= 0 && y >= 0 && newWidth > 0 && newHeight > 0 && x + newWidth <= width && y + newHeight <= height, "crop outside the image")
        var out = [UInt8]()
        out.reserveCapacity(newWidth * newHeight * 3)
        for row in y..<(y + newHeight) {
            let start = (row * width + x) * 3
            out.append(contentsOf: pixels[start..<(start + newWidth * 3)])
        }
        return PixelImage(width: newWidth, height: newHeight, pixels: out)
    }
}

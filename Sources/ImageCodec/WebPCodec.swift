import CWebP
import Foundation

/// WebP decoding through libwebp: lossy and lossless still images (an animated WebP is refused).
public enum WebPCodec {
    /// The size of a WebP, from its header.
    public static func header(of data: Data) throws -> ImageHeader {
        var width: Int32 = 0
        var height: Int32 = 0
        let ok = data.withUnsafeBytes { bytes in
            WebPGetInfo(bytes.bindMemory(to: UInt8.self).baseAddress, bytes.count, &width, &height)
        }
        guard ok != 0 else { throw ImageCodecError("not a readable WebP") }
        return ImageHeader(format: .webp, width: Int(width), height: Int(height))
    }

    /// Decodes a WebP to 8-bit RGB (alpha is dropped), refusing images over `maxPixels`.
    public static func decode(_ data: Data, maxPixels: Int) throws -> PixelImage {
        let header = try header(of: data)
        try ImageReader.checkSize(header, maxPixels: maxPixels)
        var pixels = [UInt8](repeating: 0, count: header.pixelCount * 3)
        let decoded = data.withUnsafeBytes { bytes in
            pixels.withUnsafeMutableBufferPointer { output in
                WebPDecodeRGBInto(
                    bytes.bindMemory(to: UInt8.self).baseAddress, bytes.count, output.baseAddress, output.count, Int32(header.width * 3)
                )
            }
        }
        guard decoded != nil else { throw ImageCodecError("WebP decoding failed: the file is damaged or not a still image") }
        return PixelImage(width: header.width, height: header.height, pixels: pixels)
    }
}

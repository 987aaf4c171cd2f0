import CPNG
import Foundation

/// Why an image could not be encoded or decoded.
public struct ImageCodecError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// PNG encoding and decoding through libpng's simplified API, which reports errors as values (no `longjmp`).
public enum PNGCodec {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Whether the bytes start with the PNG signature.
    public static func isPNG(_ data: some Collection<UInt8>) -> Bool {
        data.starts(with: signature)
    }

    /// Encodes an RGB image as PNG, with optional text chunks (A1111 keeps its infotext in `parameters`).
    public static func encode(_ image: PixelImage, text: [(key: String, value: String)] = []) throws -> Data {
        var png = png_image()
        png.version = UInt32(PNG_IMAGE_VERSION)
        png.width = UInt32(image.width)
        png.height = UInt32(image.height)
        png.format = UInt32(PNG_FORMAT_RGB)
        var size: png_alloc_size_t = 0
        let stride = Int32(image.width * 3)
        let sized = image.pixels.withUnsafeBytes { pixels in
            png_image_write_to_memory(&png, nil, &size, 0, pixels.baseAddress, stride, nil)
        }
        guard sized != 0, size > 0 else { throw ImageCodecError("PNG encoding failed: \(message(of: &png))") }
        var output = [UInt8](repeating: 0, count: Int(size))
        let written = image.pixels.withUnsafeBytes { pixels in
            output.withUnsafeMutableBytes { buffer in
                png_image_write_to_memory(&png, buffer.baseAddress, &size, 0, pixels.baseAddress, stride, nil)
            }
        }
        guard written != 0 else { throw ImageCodecError("PNG encoding failed: \(message(of: &png))") }
        output.removeSubrange(Int(size)...)
        return PNGTextChunks.inserting(text, into: Data(output))
    }

    /// The size of a PNG, from its header.
    public static func header(of data: Data) throws -> ImageHeader {
        var png = png_image()
        try begin(&png, data)
        png_image_free(&png)
        return ImageHeader(format: .png, width: Int(png.width), height: Int(png.height))
    }

    /// Decodes a PNG (any colour type and bit depth) to 8-bit RGB, refusing images over `maxPixels`.
    public static func decode(_ data: Data, maxPixels: Int = 64 << 20) throws -> PixelImage {
        var png = png_image()
        try begin(&png, data)
        let width = Int(png.width)
        let height = Int(png.height)
        do {
            try ImageReader.checkSize(ImageHeader(format: .png, width: width, height: height), maxPixels: maxPixels)
        } catch {
            png_image_free(&png)
            throw error
        }
        png.format = UInt32(PNG_FORMAT_RGB)
        var finished: Int32 = 0
        let pixels = [UInt8](unsafeUninitializedCapacity: width * height * 3) { buffer, count in
            finished = data.withUnsafeBytes { _ in png_image_finish_read(&png, nil, buffer.baseAddress, 0, nil) }
            count = buffer.count
        }
        guard finished != 0 else { throw ImageCodecError("PNG decoding failed: \(message(of: &png))") }
        return PixelImage(width: width, height: height, pixels: pixels)
    }

    /// Reads the header of a PNG held in `data`, which must stay alive until the read is finished or freed.
    private static func begin(_ png: inout png_image, _ data: Data) throws {
        png.version = UInt32(PNG_IMAGE_VERSION)
        let begun = data.withUnsafeBytes { bytes in
            png_image_begin_read_from_memory(&png, bytes.baseAddress, bytes.count)
        }
        guard begun != 0 else { throw ImageCodecError("not a readable PNG: \(message(of: &png))") }
    }

    private static func message(of png: inout png_image) -> String {
        withUnsafeBytes(of: &png.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}

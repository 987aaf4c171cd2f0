import CTurboJPEG
import Foundation

/// JPEG encoding and decoding through libjpeg-turbo's TurboJPEG 2 API (`tjCompress2`, `tjDecompress2`).
public enum JPEGCodec {
    /// Encodes an RGB image as a baseline JPEG with 4:2:0 chroma subsampling.
    ///
    /// - Parameter quality: 1 (smallest) to 100 (best).
    public static func encode(_ image: PixelImage, quality: Int = 85) throws -> Data {
        guard let handle = tjInitCompress() else { throw ImageCodecError("cannot start a JPEG encoder") }
        defer { tjDestroy(handle) }
        var buffer: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let status = image.pixels.withUnsafeBufferPointer { pixels in
            tjCompress2(
                handle, pixels.baseAddress, Int32(image.width), 0, Int32(image.height), Int32(TJPF_RGB.rawValue),
                &buffer, &size, Int32(TJSAMP_420.rawValue), Int32(min(max(quality, 1), 100)), TJFLAG_FASTDCT
            )
        }
        defer { tjFree(buffer) }
        guard status == 0, let buffer else { throw ImageCodecError("JPEG encoding failed: \(message(handle))") }
        return Data(bytes: buffer, count: Int(size))
    }

    /// The size of a JPEG, from its header.
    public static func header(of data: Data) throws -> ImageHeader {
        guard let handle = tjInitDecompress() else { throw ImageCodecError("cannot start a JPEG decoder") }
        defer { tjDestroy(handle) }
        return try header(of: data, handle: handle)
    }

    /// Decodes a JPEG to 8-bit RGB, refusing images over `maxPixels`. Any warning from the decoder (a
    /// truncated or damaged file) fails the decoding.
    public static func decode(_ data: Data, maxPixels: Int) throws -> PixelImage {
        guard let handle = tjInitDecompress() else { throw ImageCodecError("cannot start a JPEG decoder") }
        defer { tjDestroy(handle) }
        let header = try header(of: data, handle: handle)
        try ImageReader.checkSize(header, maxPixels: maxPixels)
        var status: Int32 = 0
        let pixels = [UInt8](unsafeUninitializedCapacity: header.pixelCount * 3) { output, count in
            status = data.withUnsafeBytes { jpeg in
                tjDecompress2(
                    handle, jpeg.bindMemory(to: UInt8.self).baseAddress, UInt(jpeg.count), output.baseAddress,
                    Int32(header.width), 0, Int32(header.height), Int32(TJPF_RGB.rawValue), TJFLAG_STOPONWARNING
                )
            }
            count = output.count
        }
        guard status == 0 else { throw ImageCodecError("JPEG decoding failed: \(message(handle))") }
        return PixelImage(width: header.width, height: header.height, pixels: pixels)
    }

    static func header(of data: Data, handle: tjhandle) throws -> ImageHeader {
        var width: Int32 = 0
        var height: Int32 = 0
        var subsampling: Int32 = 0
        var colorspace: Int32 = 0
        let status = data.withUnsafeBytes { jpeg in
            tjDecompressHeader3(handle, jpeg.bindMemory(to: UInt8.self).baseAddress, UInt(jpeg.count), &width, &height, &subsampling, &colorspace)
        }
        guard status == 0 else { throw ImageCodecError("not a readable JPEG: \(message(handle))") }
        return ImageHeader(format: .jpeg, width: Int(width), height: Int(height))
    }

    static func message(_ handle: tjhandle) -> String {
        tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown error"
    }
}

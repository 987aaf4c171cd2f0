import Foundation

/// The image file formats sdbox reads: PNG, JPEG and WebP, recognised by their leading bytes.
public enum ImageFormat: String, Sendable, CaseIterable {
    case png
    case jpeg
    case webp

    /// The format of an image file, from its signature; `nil` when it is none of the three.
    public static func detect(_ data: some Collection<UInt8>) -> ImageFormat? {
        if data.starts(with: PNGCodec.signature) { return .png }
        if data.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if data.count >= 12, data.starts(with: Array("RIFF".utf8)), data.dropFirst(8).starts(with: Array("WEBP".utf8)) {
            return .webp
        }
        return nil
    }

    /// The format a file name's extension names (`png`, `jpg`, `jpeg`, `webp`, any case).
    public init?(fileExtension: String) {
        switch fileExtension.lowercased() {
        case "png": self = .png
        case "jpg", "jpeg": self = .jpeg
        case "webp": self = .webp
        default: return nil
        }
    }

    /// The extension sdbox gives files of this format.
    public var fileExtension: String {
        switch self {
        case .png: "png"
        case .jpeg: "jpg"
        case .webp: "webp"
        }
    }

    /// The media type of this format.
    public var mediaType: String { "image/\(rawValue)" }
}

/// A format and the size of an image, read from its header without decoding its pixels.
public struct ImageHeader: Sendable, Equatable {
    public let format: ImageFormat
    public let width: Int
    public let height: Int

    public init(format: ImageFormat, width: Int, height: Int) {
        self.format = format
        self.width = width
        self.height = height
    }

    public var pixelCount: Int { width * height }
}

/// Reads PNG, JPEG and WebP files: the header alone (to check the size before paying for the pixels), or
/// the whole image as 8-bit RGB.
public enum ImageReader {
    /// The format and size of an image file. Throws when the bytes are not a PNG, JPEG or WebP whose
    /// header can be read.
    public static func header(of data: Data) throws -> ImageHeader {
        switch ImageFormat.detect(data) {
        case .png: try PNGCodec.header(of: data)
        case .jpeg: try JPEGCodec.header(of: data)
        case .webp: try WebPCodec.header(of: data)
        case nil: throw ImageCodecError("not a PNG, JPEG or WebP image")
        }
    }

    /// Decodes a PNG, JPEG or WebP file to 8-bit RGB (alpha is dropped), refusing images over `maxPixels`
    /// before their pixels are decoded. A damaged file is an error, not a partly grey picture.
    public static func decode(_ data: Data, maxPixels: Int) throws -> PixelImage {
        switch ImageFormat.detect(data) {
        case .png: try PNGCodec.decode(data, maxPixels: maxPixels)
        case .jpeg: try JPEGCodec.decode(data, maxPixels: maxPixels)
        case .webp: try WebPCodec.decode(data, maxPixels: maxPixels)
        case nil: throw ImageCodecError("not a PNG, JPEG or WebP image")
        }
    }

    static func checkSize(_ header: ImageHeader, maxPixels: Int) throws {
        guard header.width > 0, header.height > 0 else {
            throw ImageCodecError("\(header.format.rawValue.uppercased()) has no pixels")
        }
        guard header.pixelCount <= maxPixels else {
            throw ImageCodecError(
                "\(header.format.rawValue.uppercased()) of \(header.width)x\(header.height) pixels is over the limit of \(maxPixels) pixels"
            )
        }
    }
}

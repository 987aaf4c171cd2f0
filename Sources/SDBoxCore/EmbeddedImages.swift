import Foundation

/// Base64 images inside JSON answers (A1111's `images`, `image`, extensions' own fields): found by their
/// content, so any endpoint's answer can be stored with its images moved out into the object store.
public enum EmbeddedImages {
    /// An image found in a JSON string: its bytes and the file extension its format takes.
    public struct Image: Sendable, Equatable {
        public var data: Data
        public var fileExtension: String
    }

    /// The image a JSON string holds, as raw base64 or a `data:image/...;base64,` URI; nil for any other string.
    public static func decode(_ text: String) -> Image? {
        var payload = Substring(text)
        if payload.hasPrefix("data:image/"), let comma = payload.firstIndex(of: ",") {
            payload = payload[payload.index(after: comma)...]
        }
        // The base64 of each format's magic bytes, checked before decoding anything.
        let formats = [("iVBORw0KGgo", "png"), ("/9j/", "jpg"), ("UklGR", "webp"), ("R0lGOD", "gif")]
        guard payload.count >= 64, let format = formats.first(where: { payload.hasPrefix($0.0) }),
            let data = Data(base64Encoded: String(payload), options: .ignoreUnknownCharacters)
        else { return nil }
        return Image(data: data, fileExtension: format.1)
    }

    /// The file extension of an image's bytes by their magic number: png, jpg, webp or gif; nil otherwise.
    public static func fileExtension(of data: Data) -> String? {
        let magic: [([UInt8], String)] = [
            ([0x89, 0x50, 0x4E, 0x47], "png"), ([0xFF, 0xD8, 0xFF], "jpg"), ([0x52, 0x49, 0x46, 0x46], "webp"), ([0x47, 0x49, 0x46, 0x38], "gif"),
        ]
        return magic.first { data.starts(with: $0.0) }?.1
    }

    /// `json` with each image string replaced by the key `key(n, extension)` gives it (n from 1, in
    /// document order with object keys sorted), and the images by key.
    public static func extract(from json: JSONValue, key: (Int, String) -> String) -> (JSONValue, [(key: String, data: Data)]) {
        var images: [(key: String, data: Data)] = []
        func walk(_ value: JSONValue) -> JSONValue {
            switch value {
            case .string(let text):
                guard let image = decode(text) else { return value }
                let name = key(images.count + 1, image.fileExtension)
                images.append((name, image.data))
                return .string(name)
            case .array(let items):
                return .array(items.map(walk))
            case .object(let fields):
                var result: [String: JSONValue] = [:]
                for name in fields.keys.sorted() { result[name] = walk(fields[name]!) }
                return .object(result)
            default:
                return value
            }
        }
        let replaced = walk(json)
        return (replaced, images)
    }

    /// The reverse of ``extract(from:key:)``: each string that is a key of `images` becomes that image's
    /// base64.
    public static func inline(_ images: [String: String], into json: JSONValue) -> JSONValue {
        switch json {
        case .string(let text): images[text].map { .string($0) } ?? json
        case .array(let items): .array(items.map { inline(images, into: $0) })
        case .object(let fields): .object(fields.mapValues { inline(images, into: $0) })
        default: json
        }
    }
}

import Foundation
import HTTPTypes
import ImageCodec
import NIOPosix
import ObjectStore
import SDBoxCore

/// Turns the image fields of a request into what A1111 workers expect, before the task is persisted.
///
/// Every image field (`init_images[]`, `mask`, `alwayson_scripts.controlnet.args[].image` (a string, or
/// `{image, mask}`), the extras' `image` and `imageList[].data`) may hold base64 (with or without a
/// `data:` prefix) or the key of a stored image of the caller (`inputs/<user>/...` or `images/<user>/...`,
/// ending in png, jpg, jpeg or webp); anywhere else in `alwayson_scripts` (ADetailer, IP-Adapter, any
/// extension's arguments), a string that is such a key is resolved too, as the original resolves them. Each
/// image is decoded and checked (format, size against `images.maxPixels`, intact pixels); the worker
/// receives plain base64 PNG: a PNG as it was given (so its text chunks survive), a JPEG or WebP re-encoded.
/// A bad image is refused with 400 naming the field; an empty `mask` or ControlNet `image` means none, as in A1111.
public struct ImageInputResolver: Sendable {
    let objects: ObjectStore
    let maxPixels: Int
    /// The largest image file taken, in bytes (`images.maxInputMiB`).
    let maxBytes: Int
    let threadPool: NIOThreadPool

    public init(objects: ObjectStore, maxPixels: Int, maxBytes: Int = 32 << 20, threadPool: NIOThreadPool = .singleton) {
        self.objects = objects
        self.maxPixels = maxPixels
        self.maxBytes = maxBytes
        self.threadPool = threadPool
    }

    /// An image ready for a worker.
    struct Resolved {
        let base64: String
        let width: Int
        let height: Int
    }

    /// The body of a txt2img or img2img request with its images resolved.
    public func resolveGeneration(_ body: JSONValue, user: String) async throws -> JSONValue {
        var body = body
        if let images = body["init_images"]?.arrayValue {
            var resolved: [JSONValue] = []
            for (index, image) in images.enumerated() {
                resolved.append(try await resolveField(image, field: "init_images[\(index)]", user: user))
            }
            body["init_images"] = .array(resolved)
        }
        if let mask = body["mask"], !mask.isNull, mask != "" {
            body["mask"] = try await resolveField(mask, field: "mask", user: user)
        }
        if var units = body["alwayson_scripts"]?["controlnet"]?["args"]?.arrayValue {
            for index in units.indices {
                guard let image = units[index]["image"], !image.isNull, image != "" else { continue }
                let field = "alwayson_scripts.controlnet.args[\(index)].image"
                if var pair = image.objectValue {
                    for part in ["image", "mask"] {
                        guard let value = pair[part], !value.isNull, value != "" else { continue }
                        pair[part] = try await resolveField(value, field: field + "." + part, user: user)
                    }
                    units[index]["image"] = .object(pair)
                } else {
                    units[index]["image"] = try await resolveField(image, field: field, user: user)
                }
            }
            body["alwayson_scripts"]?["controlnet"]?["args"] = .array(units)
        }
        if let scripts = body["alwayson_scripts"], !scripts.isNull {
            body["alwayson_scripts"] = try await resolvingStoredKeys(in: scripts, field: "alwayson_scripts", user: user)
        }
        return body
    }

    /// `value` with every string in it that names a stored image (`images/...` or `inputs/...`, with an
    /// image extension) replaced by the image as base64 PNG; other strings are left as they are.
    func resolvingStoredKeys(in value: JSONValue, field: String, user: String) async throws -> JSONValue {
        switch value {
        case .string(let text) where Self.namesStoredImage(text):
            return .string(try await resolve(text, field: field, user: user).base64)
        case .array(let items):
            var resolved: [JSONValue] = []
            for (index, item) in items.enumerated() { resolved.append(try await resolvingStoredKeys(in: item, field: "\(field)[\(index)]", user: user)) }
            return .array(resolved)
        case .object(let members):
            var resolved: [String: JSONValue] = [:]
            for (key, member) in members { resolved[key] = try await resolvingStoredKeys(in: member, field: "\(field).\(key)", user: user) }
            return .object(resolved)
        default:
            return value
        }
    }

    /// Whether a string in an extension's arguments is the key of a stored image (of anyone: another
    /// user's is then refused by name rather than sent on as text).
    static func namesStoredImage(_ text: String) -> Bool {
        (text.hasPrefix(ObjectKey.imagesRoot) || text.hasPrefix(ObjectKey.inputsRoot)) && text.utf8.count <= 1024
            && ImageFormat(fileExtension: (text as NSString).pathExtension) != nil
    }

    /// The body of an extras request with its images resolved, and the size of each image.
    public func resolveExtras(_ body: JSONValue, kind: TaskKind, user: String) async throws -> (body: JSONValue, sizes: [(width: Int, height: Int)]) {
        var body = body
        var sizes: [(width: Int, height: Int)] = []
        if kind == .extraSingleImage, let text = body["image"]?.stringValue {
            let image = try await resolve(text, field: "image", user: user)
            body["image"] = .string(image.base64)
            sizes.append((image.width, image.height))
        } else if var list = body["imageList"]?.arrayValue {
            for index in list.indices {
                let image = try await resolve(list[index]["data"]?.stringValue ?? "", field: "imageList[\(index)].data", user: user)
                list[index]["data"] = .string(image.base64)
                sizes.append((image.width, image.height))
            }
            body["imageList"] = .array(list)
        }
        return (body, sizes)
    }

    func resolveField(_ value: JSONValue, field: String, user: String) async throws -> JSONValue {
        guard let text = value.stringValue else { throw Self.refusal(field, "must be a string holding an image") }
        return .string(try await resolve(text, field: field, user: user).base64)
    }

    /// One image field: base64 or a stored key, decoded, checked and turned into base64 PNG.
    func resolve(_ text: String, field: String, user: String) async throws -> Resolved {
        let data = Self.isStoredKey(text) ? try await storedImage(text, field: field, user: user) : try base64Image(text, field: field)
        try checkSize(data.count, field: field)
        let (header, image) = try await decode(data, field: field)
        let png = header.format == .png ? data : try await threadPool.runIfActive { try PNGCodec.encode(image) }
        return Resolved(base64: png.base64EncodedString(), width: image.width, height: image.height)
    }

    /// Decodes an image file (PNG, JPEG or WebP) on the thread pool, refusing with 400 naming `field` one
    /// that is damaged, of another format, or over `images.maxPixels`.
    package func decode(_ data: Data, field: String) async throws -> (header: ImageHeader, image: PixelImage) {
        let maxPixels = self.maxPixels
        return try await threadPool.runIfActive {
            do {
                return (try ImageReader.header(of: data), try ImageReader.decode(data, maxPixels: maxPixels))
            } catch let error as ImageCodecError {
                throw Self.refusal(field, "\(error)")
            }
        }
    }

    /// Whether a field names a stored image rather than holding base64: only a key has a dot (base64 has none).
    static func isStoredKey(_ text: String) -> Bool {
        !text.hasPrefix("data:") && text.contains(".") && text.utf8.count <= 1024
    }

    /// The prefixes under which a user's requests may name stored images.
    static func allowedPrefixes(user: String) -> [String] {
        [ObjectKey.inputs(of: user), ObjectKey.images(of: user)]
    }

    func storedImage(_ key: String, field: String, user: String) async throws -> Data {
        guard Self.allowedPrefixes(user: user).contains(where: { key.hasPrefix($0) }) else {
            throw Self.refusal(field, "a stored image must be under \(Self.allowedPrefixes(user: user).joined(separator: " or ")), not '\(key)'")
        }
        guard ImageFormat(fileExtension: (key as NSString).pathExtension) != nil else {
            throw Self.refusal(field, "a stored image must end in .png, .jpg, .jpeg or .webp: '\(key)'")
        }
        do {
            return try await objects.get(key)
        } catch ObjectStoreError.notFound {
            throw Self.refusal(field, "no stored image '\(key)'")
        } catch ObjectStoreError.invalidKey {
            throw Self.refusal(field, "invalid stored image key '\(key)'")
        }
    }

    func base64Image(_ text: String, field: String) throws -> Data {
        var payload = Substring(text)
        if payload.hasPrefix("data:") {
            guard let comma = payload.firstIndex(of: ",") else { throw Self.refusal(field, "a data: URL needs a comma before its base64") }
            payload = payload[payload.index(after: comma)...]
        }
        // Refused before decoding: base64 is 4 characters per 3 bytes (line breaks are not characters of it).
        try checkSize(payload.utf8.lazy.filter { $0 != UInt8(ascii: "\n") && $0 != UInt8(ascii: "\r") }.count / 4 * 3, field: field)
        guard !payload.isEmpty, let data = Data(base64Encoded: String(payload), options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw Self.refusal(field, "not base64 and not a stored image key")
        }
        return data
    }

    func checkSize(_ bytes: Int, field: String) throws {
        guard bytes <= maxBytes else {
            throw APIError(
                .contentTooLarge, "image too large",
                detail: "field '\(field)': the image file is \(bytes >> 10) KiB; the limit is \(maxBytes >> 20) MiB (images.maxInputMiB)",
                extra: ["field": .string(field)]
            )
        }
    }

    static func refusal(_ field: String, _ message: String) -> APIError {
        APIError(.badRequest, "invalid image", detail: "field '\(field)': \(message)", extra: ["field": .string(field)])
    }
}

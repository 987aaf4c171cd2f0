import Crypto
import Foundation

/// What is wrong with a model file.
public struct CheckpointError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A model file on disk and the facts A1111 reports about it.
///
/// A1111 names a checkpoint by its file name and a short hash: the first 10 hex digits of the file's sha256
/// (its `title` is `"<file name> [<short hash>]"`).
public struct Checkpoint: Sendable, Equatable {
    public let path: String
    public let sha256: String

    public init(path: String, sha256: String) {
        self.path = path
        self.sha256 = sha256
    }

    /// The file name, e.g. `demo.safetensors`.
    public var fileName: String { (path as NSString).lastPathComponent }
    /// The file name without its extension, A1111's `model_name`.
    public var modelName: String { (fileName as NSString).deletingPathExtension }
    /// A1111's short hash: the first 10 hex digits of the sha256.
    public var shortHash: String { String(sha256.prefix(10)) }
    /// A1111's title, `"<file name> [<short hash>]"`.
    public var title: String { "\(fileName) [\(shortHash)]" }

    /// Checks that the file is a model A1111 could load: a `.safetensors` file whose header parses and whose
    /// tensors lie inside the file, or a `.ckpt`/`.pt`/`.pth`/`.bin` pickle archive.
    ///
    /// - Parameters:
    ///   - fileExtension: The format to check for; by default the path's extension (an upload is checked
    ///     under its temporary name).
    ///   - type: The type the file is meant to be: a safetensors file recognisably of another type is
    ///     refused (``ModelType/recognised(fromTensorNames:)``).
    public static func validate(path: String, as fileExtension: String? = nil, type: ModelType? = nil) throws(CheckpointError) {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CheckpointError("cannot open \(path)")
        }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()).map { Int($0) } ?? 0
        try? handle.seek(toOffset: 0)
        let ext = (fileExtension ?? (path as NSString).pathExtension).lowercased()
        switch ext {
        case "safetensors":
            let header = try SafetensorsHeader.read(handle, size: size, path: path)
            let names = try SafetensorsHeader.check(header, dataSize: size - 8 - header.count, path: path)
            if let type, let recognised = ModelType.recognised(fromTensorNames: names), recognised != type {
                throw CheckpointError("\(path) is a \(recognised.displayName), not a \(type.displayName)")
            }
        case "ckpt", "pt", "pth", "bin":
            // PyTorch checkpoints are zip archives (or legacy pickles starting with the PROTO opcode).
            guard let magic = try? handle.read(upToCount: 2), magic == Data([0x50, 0x4B]) || magic.first == 0x80 else {
                throw CheckpointError("\(path) is not a PyTorch checkpoint")
            }
        default:
            throw CheckpointError("\(path) has an unsupported extension '.\(ext)'")
        }
    }

    /// Reads the whole file and returns its sha256 as lowercase hex.
    public static func sha256(ofFileAt path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CheckpointError("cannot open \(path)")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        return hasher.finalize().hexString
    }
}

extension Checkpoint {
    /// A textual-inversion embedding's size as A1111 reports it: how many vectors it puts in a prompt, and
    /// the width of each (the first and last dimension of its tensor); nil for a file that is not a
    /// readable safetensors embedding.
    public static func embeddingShape(ofFileAt path: String) -> (vectors: Int, width: Int)? {
        guard path.lowercased().hasSuffix(".safetensors"), let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()).map { Int($0) } ?? 0
        try? handle.seek(toOffset: 0)
        guard let header = try? SafetensorsHeader.read(handle, size: size, path: path),
            let tensors = (try? JSONValue(parsing: header))?.objectValue,
            let shape = tensors.filter({ $0.key != "__metadata__" }).min(by: { $0.key < $1.key })?.value["shape"]?.arrayValue?.compactMap(\.integerValue),
            let first = shape.first, let last = shape.last
        else { return nil }
        return (shape.count > 1 ? Int(first) : 1, Int(last))
    }
}

/// The JSON header at the start of a `.safetensors` file.
enum SafetensorsHeader {
    /// The JSON header of a safetensors file of `size` bytes, read from its start.
    static func read(_ handle: FileHandle, size: Int, path: String) throws(CheckpointError) -> Data {
        guard size >= 8, let prefix = try? handle.read(upToCount: 8), prefix.count == 8 else {
            throw CheckpointError("\(path) is too short to be a safetensors file")
        }
        let headerLength = prefix.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength > 1, headerLength <= 100_000_000, 8 + Int(headerLength) <= size,
            let header = try? handle.read(upToCount: Int(headerLength)), header.count == Int(headerLength)
        else {
            throw CheckpointError("\(path) has an invalid safetensors header length")
        }
        return header
    }

    static let dtypeSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
    ]

    /// Checks every tensor's entry and returns the tensors' names.
    @discardableResult
    static func check(_ header: Data, dataSize: Int, path: String) throws(CheckpointError) -> [String] {
        guard let json = try? JSONValue(parsing: header), let tensors = json.objectValue else {
            throw CheckpointError("\(path) has a safetensors header that is not a JSON object")
        }
        for (name, tensor) in tensors where name != "__metadata__" {
            guard let dtype = tensor["dtype"]?.stringValue, let width = dtypeSizes[dtype],
                let shape = tensor["shape"]?.arrayValue?.compactMap(\.integerValue),
                let offsets = tensor["data_offsets"]?.arrayValue?.compactMap(\.integerValue), offsets.count == 2,
                offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataSize
            else {
                throw CheckpointError("\(path): tensor '\(name)' has an invalid entry in the safetensors header")
            }
            let elements = shape.reduce(Int64(1), *)
            guard elements * Int64(width) == offsets[1] - offsets[0] else {
                throw CheckpointError("\(path): tensor '\(name)' size does not match its shape")
            }
        }
        return Array(tensors.keys)
    }
}

/// Writes the small valid checkpoint sdbox places in an empty models folder so that a new user's first
/// request works with the reference worker. It holds a few random tensors, not a diffusion model.
public enum DemoCheckpoint {
    public static let fileName = "demo.safetensors"

    /// The file's bytes: a safetensors header and 256 KiB of deterministic float32 weights.
    public static func contents() -> Data {
        let tensors: [(name: String, shape: [Int])] = [("demo.weight", [256, 256])]
        var header: [String: JSONValue] = ["__metadata__": ["format": "pt", "sdbox": "demo checkpoint, not a diffusion model"]]
        var offset = 0
        for tensor in tensors {
            let bytes = tensor.shape.reduce(1, *) * 4
            header[tensor.name] = [
                "dtype": "F32", "shape": .array(tensor.shape.map { .integer(Int64($0)) }),
                "data_offsets": [.integer(Int64(offset)), .integer(Int64(offset + bytes))],
            ]
            offset += bytes
        }
        var headerBytes = (try? JSONValue.object(header).encoded()) ?? Data()
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var data = Data()
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(headerBytes)
        var state: UInt32 = 0x1234_5678
        for _ in 0..<(offset / 4) {
            state = state &* 1_664_525 &+ 1_013_904_223
            let value = Float(Int32(bitPattern: state)) / Float(Int32.max) * 0.02
            withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) }
        }
        return data
    }
}

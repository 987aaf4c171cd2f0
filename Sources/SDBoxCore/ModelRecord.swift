import Crypto
import Foundation

/// The kinds of model file sdbox manages, each in the folder A1111 expects under the models root, so
/// workers find them through their usual flags.
public enum ModelType: String, Codable, Sendable, CaseIterable {
    case stableDiffusion
    case sdVae
    case lora
    case controlNet
    case embedding
    case upscaler

    /// The folder under the models root, as A1111 lays it out.
    public var folderName: String {
        switch self {
        case .stableDiffusion: "Stable-diffusion"
        case .sdVae: "VAE"
        case .lora: "Lora"
        case .controlNet: "ControlNet"
        case .embedding: "embeddings"
        case .upscaler: "ESRGAN"
        }
    }

    /// The folder of this type in a models folder laid out as A1111's (`<root>/Stable-diffusion`, ...).
    public func folder(in modelsFolder: String) -> String { modelsFolder + "/" + folderName }

    /// The file of model `name` of this type in a models folder.
    public func path(of name: String, in modelsFolder: String) -> String { folder(in: modelsFolder) + "/" + name }

    /// File extensions accepted for every type.
    public static let extensions: Set<String> = ["safetensors", "ckpt", "pt", "pth", "bin"]

    /// Whether `name` is an acceptable model file name: a plain file name (no folder, no `..`, not hidden,
    /// no control or formatting characters, at most 255 bytes) with an accepted extension. Returns why not, or nil.
    public static func problem(withName name: String) -> String? {
        if name.isEmpty || name.utf8.count > 255 { return "a model name must be 1 to 255 bytes long" }
        if name.contains("/") || name.contains("\\") { return "a model name cannot contain a folder separator" }
        if name.hasPrefix(".") { return "a model name cannot start with '.'" }
        if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            return "a model name cannot contain control characters"
        }
        // Format characters (bidirectional overrides and isolates, zero-width joiners, ...) make a name
        // read as another one: `evil\u{202E}txt.safetensors`.
        if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .format }) {
            return "a model name cannot contain invisible formatting characters (bidirectional controls, zero-width characters)"
        }
        let ext = (name as NSString).pathExtension.lowercased()
        if !extensions.contains(ext) {
            return "a model file must end in one of \(extensions.sorted().map { "." + $0 }.joined(separator: ", "))"
        }
        return nil
    }
}

/// A model's place in its life: hashed on arrival, then loaded and unloaded as workers come and go.
public enum ModelStatus: String, Codable, Sendable {
    case registering, unloaded, loading, loaded, deleted
    /// Its workers failed to start; ``ModelRecord/error`` says why. The next task for it tries again.
    case failed
}

/// A model file known to sdbox, as `GET /models` reports it.
public struct ModelRecord: Codable, Sendable, Equatable {
    public var type: ModelType
    /// The file name, e.g. `demo.safetensors`.
    public var name: String
    /// The file's path on the box (the original's object-storage path).
    public var ossPath: String
    /// The file's sha256, empty while it is being hashed.
    public var etag: String
    public var status: ModelStatus
    public var size: Int64
    public var registeredTime: Date
    public var lastModificationTime: Date
    /// Why the model is `failed`: the end of its worker's output.
    public var error: String?

    public init(type: ModelType, name: String, ossPath: String, etag: String, status: ModelStatus, size: Int64, registeredTime: Date, lastModificationTime: Date) {
        self.type = type
        self.name = name
        self.ossPath = ossPath
        self.etag = etag
        self.status = status
        self.size = size
        self.registeredTime = registeredTime
        self.lastModificationTime = lastModificationTime
    }

    /// The checkpoint as A1111 names it, once hashed.
    public var checkpoint: Checkpoint? {
        etag.isEmpty ? nil : Checkpoint(path: ossPath, sha256: etag)
    }
}

/// A worker pool for one checkpoint: the original's per-model "function" (`sd_<hash>`), with its settings.
public struct PoolRecord: Codable, Sendable, Equatable {
    /// `sd_` followed by 16 hex digits of the sha256 of the model's file name.
    public var functionName: String
    /// The checkpoint's file name.
    public var model: String
    public var createdTime: Date
    /// This pool's own settings, over the configured defaults.
    public var settings: PoolSettings

    public init(model: String, createdTime: Date = Date(), settings: PoolSettings = PoolSettings()) {
        self.functionName = Self.name(forModel: model)
        self.model = model
        self.createdTime = createdTime
        self.settings = settings
    }

    public static func name(forModel model: String) -> String {
        "sd_" + String(Crypto.SHA256.hash(data: Data(model.utf8)).hexString.prefix(16))
    }
}

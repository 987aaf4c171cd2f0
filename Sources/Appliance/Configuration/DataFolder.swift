import Foundation

/// What lives where in sdbox's data folder (`dataDir`) and, for a fleet, its shared folder (`sharedDir`),
/// in one place: the server, the commands that open the folder beside it, and backups name its parts
/// through this. The shared folder, when there is one, holds what every box must see alike: the objects,
/// the models, the secrets of signed URLs and webhooks, and the prompt styles.
public struct DataFolder: Sendable, Equatable {
    /// The folder, as an absolute path without `.` or `..`.
    public let path: String
    /// The shared folder, likewise, or the data folder itself when there is none.
    public let shared: String

    public init(_ path: String, shared: String? = nil) {
        self.path = URL(fileURLWithPath: path).standardizedFileURL.path
        self.shared = shared.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? self.path
    }

    /// The folders a configuration names.
    public init(_ configuration: ServerConfiguration) {
        self.init(configuration.dataDirectory, shared: configuration.sharedDirectory)
    }

    /// Whether the box shares a folder with others.
    public var isShared: Bool { shared != path }

    /// The LMDB environment (`data.mdb`, `lock.mdb`).
    public var database: String { path + "/" + Self.databaseFolder }
    /// The object store: output images, thumbnails, passthrough answers, uploaded inputs.
    public var objects: String { shared + "/" + Self.objectsFolder }
    /// Model files by type (`Stable-diffusion/`, `Lora/`, ...) and their checksum cache.
    public var models: String { shared + "/" + Self.modelsFolder }
    /// The secret of signed object URLs.
    public var urlSigningKey: String { shared + "/" + Self.urlSigningKeyName }
    /// The secret of webhook signatures, unless `webhooks.secret` names one.
    public var webhookSecret: String { shared + "/" + Self.webhookSecretName }
    /// The box's prompt styles, in A1111's format.
    public var styles: String { shared + "/" + Self.stylesName }

    static let databaseFolder = "db"
    static let objectsFolder = "objects"
    static let modelsFolder = "models"
    static let urlSigningKeyName = "url-signing.key"
    static let webhookSecretName = "webhook-secret"
    static let stylesName = "styles.csv"
}

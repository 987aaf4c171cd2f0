import Foundation

/// What lives where in sdbox's data folder (`dataDir`), in one place: the server, the commands that open
/// the folder beside it, and backups name its parts through this.
public struct DataFolder: Sendable, Equatable {
    /// The folder, as an absolute path without `.` or `..`.
    public let path: String

    public init(_ path: String) {
        self.path = URL(fileURLWithPath: path).standardizedFileURL.path
    }

    /// The LMDB environment (`data.mdb`, `lock.mdb`).
    public var database: String { path + "/" + Self.databaseFolder }
    /// The object store: output images, thumbnails, passthrough answers, uploaded inputs.
    public var objects: String { path + "/" + Self.objectsFolder }
    /// Model files by type (`Stable-diffusion/`, `Lora/`, ...) and their checksum cache.
    public var models: String { path + "/" + Self.modelsFolder }
    /// The secret of signed object URLs.
    public var urlSigningKey: String { path + "/" + Self.urlSigningKeyName }
    /// The secret of webhook signatures, unless `webhooks.secret` names one.
    public var webhookSecret: String { path + "/" + Self.webhookSecretName }
    /// The box's prompt styles, in A1111's format.
    public var styles: String { path + "/" + Self.stylesName }

    static let databaseFolder = "db"
    static let objectsFolder = "objects"
    static let modelsFolder = "models"
    static let urlSigningKeyName = "url-signing.key"
    static let webhookSecretName = "webhook-secret"
    static let stylesName = "styles.csv"
}

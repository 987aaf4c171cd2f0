import Foundation

/// What a backup is, as its first member (`sdbox-backup.json`) says; a restore refuses an archive that
/// does not begin with one it understands.
public struct BackupManifest: Codable, Sendable, Equatable {
    /// The member's name, first in every backup.
    public static let fileName = "sdbox-backup.json"
    /// The layout this sdbox writes and reads.
    public static let currentFormat = 1

    /// The archive's layout version (``currentFormat``).
    public var format: Int
    /// Always `sdbox`: what wrote it.
    public var createdBy: String
    public var createdAt: Date
    /// The data folder it was taken from.
    public var dataDirectory: String
    /// The configuration file it holds (as `sdbox.yaml`), by its path on the box it was taken from.
    public var configurationFile: String?
    /// What it holds: `database`, `objects`, `secrets`, `styles`, `configuration`, `models`.
    public var contents: [String]

    public init(createdAt: Date, dataDirectory: String, configurationFile: String?, contents: [String]) {
        self.format = Self.currentFormat
        self.createdBy = "sdbox"
        self.createdAt = createdAt
        self.dataDirectory = dataDirectory
        self.configurationFile = configurationFile
        self.contents = contents
    }
}

import Foundation

/// A model being installed from a link (`POST /admin/models/install`): where it comes from, what it will
/// be called, and how far its download has got. Kept in the catalogue so that a restart resumes it.
public struct ModelInstall: Codable, Sendable, Equatable {
    /// Where an install is.
    public enum State: String, Codable, Sendable {
        /// Waiting for a download slot (`models.maxConcurrentInstalls`).
        case queued
        /// Asking the site what the link names (Civitai's API) or downloading.
        case downloading
        /// Downloaded; being checked and placed.
        case verifying
        /// Placed and registered as an upload is.
        case succeeded
        /// Given up: `error` says why.
        case failed
        /// Cancelled by an admin.
        case cancelled

        /// Whether the install is over.
        public var isFinal: Bool { self == .succeeded || self == .failed || self == .cancelled }
    }

    public var id: String
    /// The link as the admin gave it (a URL, a Hugging Face `owner/repo/path` or a Civitai link).
    public var link: String
    /// Which site the link is on: `https`, `huggingface` or `civitai`.
    public var site: String
    /// The Hugging Face revision (branch, tag or commit), when one was given.
    public var revision: String?
    /// The type the admin gave, if any: a Civitai model of another type is refused.
    public var declaredType: ModelType?
    /// The type it is installed as: the admin's, else the site's, else a checkpoint.
    public var type: ModelType
    /// The file name it is installed under; empty until the site has said (a Civitai link names no file).
    public var name: String
    /// Whether an existing model of that name is replaced.
    public var overwrite: Bool
    /// The sha256 the file must have: the admin's, or the one the site publishes.
    public var sha256: String?
    /// Where the file is fetched from once the link is resolved (no token in it).
    public var downloadURL: String?
    public var state: State
    /// Bytes on disk so far.
    public var receivedBytes: Int64
    /// The file's size, once a site has said.
    public var totalBytes: Int64?
    /// Bytes per second over the last seconds of the download.
    public var bytesPerSecond: Double?
    /// Tries so far (a dropped connection is retried from where it stopped).
    public var attempts: Int
    public var error: String?
    public var createdAt: Date
    public var finishedAt: Date?

    public init(id: String, link: String, site: String, revision: String?, declaredType: ModelType?, name: String, overwrite: Bool, sha256: String?, createdAt: Date = Date()) {
        self.id = id
        self.link = link
        self.site = site
        self.revision = revision
        self.declaredType = declaredType
        self.type = declaredType ?? .stableDiffusion
        self.name = name
        self.overwrite = overwrite
        self.sha256 = sha256
        self.state = .queued
        self.receivedBytes = 0
        self.attempts = 0
        self.createdAt = createdAt
    }

    /// Seconds until the download ends at the current speed, when both are known.
    public var secondsLeft: Double? {
        guard let totalBytes, let bytesPerSecond, bytesPerSecond > 0, state == .downloading else { return nil }
        return Double(max(0, totalBytes - receivedBytes)) / bytesPerSecond
    }
}

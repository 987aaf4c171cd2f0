import Foundation
import Logging
import NIOPosix
import SDBoxCore
import Storage

/// The checkpoints sdbox can serve: the files of the models folder (A1111's layout), each with a record
/// in the catalog holding its sha256, hashed in the background when a file appears or changes.
public actor ModelRegistry {
    let catalog: CatalogStore
    let directory: String
    let logger: Logger
    let threadPool: NIOThreadPool
    var hashing: Set<String> = []

    public init(catalog: CatalogStore, modelsDirectory: String, logger: Logger, threadPool: NIOThreadPool = .singleton) throws {
        self.catalog = catalog
        self.directory = modelsDirectory + "/" + ModelType.stableDiffusion.folderName
        self.logger = logger
        self.threadPool = threadPool
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Writes the demo checkpoint when the folder holds no checkpoint, so a first request works.
    /// Returns whether it did.
    @discardableResult
    public func installDemoCheckpointIfEmpty() async throws -> Bool {
        let directory = self.directory
        return try await threadPool.runIfActive {
            let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter(Self.isModelFile)
            guard files.isEmpty else { return false }
            let path = directory + "/" + DemoCheckpoint.fileName
            try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: path), options: .atomic)
            return true
        }
    }

    static func isModelFile(_ name: String) -> Bool {
        !name.hasPrefix(".") && ModelType.stableDiffusion.extensions.contains((name as NSString).pathExtension.lowercased())
    }

    struct FileFacts: Sendable {
        let name: String
        let size: Int64
        let modified: Date

        /// Whether the record describes this version of the file. Records keep times to the millisecond,
        /// so times closer than that are the same.
        func matches(_ record: ModelRecord) -> Bool {
            record.size == size && abs(record.lastModificationTime.timeIntervalSince(modified)) < 0.002
        }
    }

    /// Brings the records in line with the folder: new or changed files are (re)hashed, records of
    /// removed files are dropped. Returns the records.
    @discardableResult
    public func refresh() async throws -> [ModelRecord] {
        let directory = self.directory
        let files: [FileFacts] = try await threadPool.runIfActive {
            try FileManager.default.contentsOfDirectory(atPath: directory).filter(Self.isModelFile).compactMap { name in
                let attributes = try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)
                guard attributes?[.type] as? FileAttributeType == .typeRegular,
                    let size = attributes?[.size] as? NSNumber, let modified = attributes?[.modificationDate] as? Date
                else { return nil }
                return FileFacts(name: name, size: size.int64Value, modified: modified)
            }
        }
        var records = Dictionary(uniqueKeysWithValues: try await catalog.models().filter { $0.type == .stableDiffusion }.map { ($0.name, $0) })
        for file in files {
            if let record = records[file.name], file.matches(record), !record.etag.isEmpty || hashing.contains(file.name)
            {
                continue
            }
            let record = ModelRecord(
                type: .stableDiffusion, name: file.name, ossPath: directory + "/" + file.name, etag: "", status: .registering,
                size: file.size, registeredTime: records[file.name]?.registeredTime ?? Date(), lastModificationTime: file.modified
            )
            try await catalog.save(record)
            records[file.name] = record
            startHashing(record)
        }
        let present = Set(files.map(\.name))
        for name in records.keys where !present.contains(name) {
            try await catalog.removeModel(.stableDiffusion, named: name)
            records[name] = nil
        }
        return records.values.sorted { $0.name < $1.name }
    }

    func startHashing(_ record: ModelRecord) {
        guard hashing.insert(record.name).inserted else { return }
        let threadPool = self.threadPool
        Task {
            let result: Result<String, any Error>
            do {
                result = .success(try await threadPool.runIfActive { try Checkpoint.sha256(ofFileAt: record.ossPath) })
            } catch {
                result = .failure(error)
            }
            await self.finishHashing(record, result)
        }
    }

    func finishHashing(_ record: ModelRecord, _ result: Result<String, any Error>) async {
        hashing.remove(record.name)
        switch result {
        case .success(let sha256):
            var hashed = record
            hashed.etag = sha256
            hashed.status = .unloaded
            do {
                // Keep the record only if the file did not change while it was hashed.
                if let current = try await catalog.model(.stableDiffusion, named: record.name),
                    FileFacts(name: record.name, size: record.size, modified: record.lastModificationTime).matches(current)
                {
                    try await catalog.save(hashed)
                    logger.info("model hashed", metadata: ["model": "\(record.name)", "sha256": "\(sha256)"])
                }
            } catch {
                logger.error("could not save model record", metadata: ["model": "\(record.name)", "error": "\(error)"])
            }
        case .failure(let error):
            logger.error("could not hash model", metadata: ["model": "\(record.name)", "error": "\(error)"])
        }
    }

    /// Follows the scheduler: a model whose workers failed to start is `failed` with the reason; once a
    /// worker for it starts again it is back to `unloaded` (its live state is read from the scheduler).
    public func schedulerReported(model name: String, status: ModelStatus, error: String?) async {
        do {
            guard var record = try await catalog.model(.stableDiffusion, named: name) else { return }
            if status == .failed {
                record.status = .failed
                record.error = error
            } else if record.status == .failed {
                record.status = .unloaded
                record.error = nil
            } else {
                return
            }
            try await catalog.save(record)
        } catch {
            logger.error("could not record model status", metadata: ["model": "\(name)", "error": "\(error)"])
        }
    }

    /// The records as they stand.
    public func models() async throws -> [ModelRecord] {
        try await catalog.models().filter { $0.type == .stableDiffusion }.sorted { $0.name < $1.name }
    }

    /// Finds a checkpoint the way A1111 does: by file name, name without extension, title
    /// (`name [hash]`), or short or full hash.
    public func resolve(_ reference: String) async throws -> ModelRecord? {
        let models = try await models()
        let wanted = reference.trimmingCharacters(in: .whitespaces)
        if let exact = models.first(where: { $0.name == wanted }) { return exact }
        if let titled = models.first(where: { $0.checkpoint?.title == wanted }) { return titled }
        let withoutHash = wanted.replacingOccurrences(of: #"\s*\[[0-9a-f]+\]$"#, with: "", options: .regularExpression)
        if let named = models.first(where: { $0.name == withoutHash || ($0.name as NSString).deletingPathExtension == withoutHash }) {
            return named
        }
        if wanted.count >= 8, let hashed = models.first(where: { !$0.etag.isEmpty && $0.etag.hasPrefix(wanted.lowercased()) }) {
            return hashed
        }
        return nil
    }
}

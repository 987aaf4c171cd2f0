import Foundation
import HTTPTypes
import Logging
import NIOPosix
import SDBoxCore
import Storage

/// The model files sdbox can serve: checkpoints, VAEs, LoRAs, ControlNet models, embeddings and upscalers,
/// each type in its A1111 folder under the models root, each file with a record in the catalogue holding
/// its sha256 (hashed in the background when a file appears or changes).
///
/// Files arrive by upload (``ModelUpload``), by registration of a path already on the box (a symbolic
/// link in the type's folder), or by being copied into a folder by hand (found by ``refresh()``).
public actor ModelRegistry {
    let catalog: any CatalogStore
    let root: String
    let logger: Logger
    let threadPool: NIOThreadPool
    /// The sha256 of files already hashed, so that a file renamed or found again is not read again.
    let checksums: ChecksumCache
    var hashing: Set<String> = []
    /// Names being uploaded right now (`type/name`), so two uploads of one name cannot race.
    var uploading: Set<String> = []
    /// Whether the first ``refresh()`` removed the temporary files of uploads a crash cut off. Only the
    /// first: later, such files belong to uploads in progress (which remove their own when they fail).
    var leftoversRemoved = false
    /// How long a temporary file must have been left alone before it is removed as left behind: 0 (at
    /// once) on a box of its own, a day in a models folder other boxes share.
    nonisolated let leftoverAge: TimeInterval
    /// Whether other boxes share the models folder: then one box hashes a file (``HashingClaim``).
    nonisolated let shared: Bool
    /// Every model record as last read, and when: requests resolve models from here rather than decode
    /// every record each time. This registry's own writes clear it at once; other processes' show within
    /// ``recordsMaxAge``.
    var records: (all: [ModelRecord], readAt: ContinuousClock.Instant)?
    /// Counts this registry's writes, so that a read that raced one is not kept.
    var writes = 0
    let recordsMaxAge = Duration.seconds(1)

    public init(catalog: any CatalogStore, modelsDirectory: String, sharedWithOtherBoxes: Bool = false, logger: Logger, threadPool: NIOThreadPool = .singleton) throws {
        self.leftoverAge = sharedWithOtherBoxes ? 86400 : 0
        self.shared = sharedWithOtherBoxes
        self.catalog = catalog
        self.root = modelsDirectory
        self.logger = logger
        self.threadPool = threadPool
        self.checksums = ChecksumCache(file: modelsDirectory + "/" + ChecksumCache.defaultFileName)
        for type in ModelType.allCases {
            try FileManager.default.createDirectory(atPath: type.folder(in: root), withIntermediateDirectories: true)
        }
    }

    /// The folder of a model type.
    public nonisolated func folder(of type: ModelType) -> String { type.folder(in: root) }

    /// Writes the demo checkpoint when the checkpoint folder holds none, so a first request works.
    /// Returns whether it did.
    @discardableResult
    public func installDemoCheckpointIfEmpty() async throws -> Bool {
        let directory = folder(of: .stableDiffusion)
        return try await threadPool.runIfActive {
            let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { ModelType.problem(withName: $0) == nil }
            guard files.isEmpty else { return false }
            let path = directory + "/" + DemoCheckpoint.fileName
            try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: path), options: .atomic)
            return true
        }
    }

    struct FileFacts: Sendable {
        let type: ModelType
        let name: String
        let size: Int64
        let modified: Date

        /// Whether the record describes this version of the file. Records keep times to the millisecond,
        /// so times closer than that are the same.
        func matches(_ record: ModelRecord) -> Bool {
            record.size == size && abs(record.lastModificationTime.timeIntervalSince(modified)) < 0.002
        }
    }

    /// Size and modification time of the file at `path`, following a symbolic link (registered models).
    static func facts(type: ModelType, name: String, path: String) -> FileFacts? {
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: target),
            attributes[.type] as? FileAttributeType == .typeRegular,
            let size = attributes[.size] as? NSNumber, let modified = attributes[.modificationDate] as? Date
        else { return nil }
        return FileFacts(type: type, name: name, size: size.int64Value, modified: modified)
    }

    /// Brings the records in line with the folders: new or changed files are (re)hashed, records of
    /// removed files are dropped (a `deleted` record, the original's tombstone, stays until a file of its
    /// name comes back). Leftovers of uploads a crash cut off are removed (on the first call). Returns the
    /// records of the files there are, and with `includingDeleted` the `deleted` records too.
    @discardableResult
    public func refresh(includingDeleted: Bool = false) async throws -> [ModelRecord] {
        let root = self.root
        let removeLeftovers = !leftoversRemoved
        let leftoverAge = self.leftoverAge
        leftoversRemoved = true
        let files: [FileFacts] = try await threadPool.runIfActive {
            var files: [FileFacts] = []
            for type in ModelType.allCases {
                let directory = type.folder(in: root)
                for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
                    if ModelUpload.isLeftover(name) {
                        if removeLeftovers, ModelUpload.isAbandoned(directory + "/" + name, age: leftoverAge) { unlink(directory + "/" + name) }
                        continue
                    }
                    guard ModelType.problem(withName: name) == nil, let facts = Self.facts(type: type, name: name, path: directory + "/" + name) else { continue }
                    files.append(facts)
                }
            }
            return files
        }
        var records = Dictionary(uniqueKeysWithValues: try await catalog.models().map { (Self.key($0.type, $0.name), $0) })
        for file in files {
            let key = Self.key(file.type, file.name)
            if let record = records[key], record.status != .deleted, file.matches(record),
                !record.etag.isEmpty || hashing.contains(key) || record.status == .failed
            {
                continue
            }
            if shared {
                // Another box may be hashing it, or have just done so: one box hashes a shared file.
                let (root, type, name) = (root, file.type, file.name)
                guard try await threadPool.runIfActive({ HashingClaim.take(root: root, type: type, name: name) }) else { continue }
                if let fresh = try await catalog.model(file.type, named: file.name), fresh.status != .deleted, file.matches(fresh), !fresh.etag.isEmpty {
                    try? await threadPool.runIfActive { HashingClaim.release(root: root, type: type, name: name) }
                    records[key] = fresh
                    continue
                }
            }
            let record = ModelRecord(
                type: file.type, name: file.name, ossPath: folder(of: file.type) + "/" + file.name, etag: "", status: .registering,
                size: file.size, registeredTime: records[key]?.registeredTime ?? Date(), lastModificationTime: file.modified
            )
            try await save(record)
            records[key] = record
            startHashing(record, claimed: shared)
        }
        let present = Set(files.map { Self.key($0.type, $0.name) })
        for (key, record) in records where !present.contains(key) && !uploading.contains(key) {
            if record.status == .deleted {
                if includingDeleted { continue }
            } else {
                try await removeRecord(record.type, named: record.name)
            }
            records[key] = nil
        }
        return records.values.sorted { ($0.type.rawValue, $0.name) < ($1.type.rawValue, $1.name) }
    }

    static func key(_ type: ModelType, _ name: String) -> String { "\(type.rawValue)/\(name)" }

    /// Hashes a model's file in the background and saves its record with the sha256. In a shared models
    /// folder, only with the file's ``HashingClaim`` (taken here unless the caller took it, `claimed`):
    /// another box holding it hashes the file instead.
    func startHashing(_ record: ModelRecord, claimed: Bool = false) {
        guard hashing.insert(Self.key(record.type, record.name)).inserted else { return }
        let (threadPool, checksums, root, mustClaim) = (self.threadPool, self.checksums, self.root, shared && !claimed)
        Task {
            let result: Result<String, any Error>
            do {
                if mustClaim, try await !threadPool.runIfActive({ HashingClaim.take(root: root, type: record.type, name: record.name) }) {
                    await self.leaveHashing(record)
                    return
                }
                result = .success(try await threadPool.runIfActive { try checksums.sha256(ofFileAt: record.ossPath) })
            } catch {
                result = .failure(error)
            }
            await self.finishHashing(record, result)
        }
    }

    /// Forgets a hash this box leaves to the box that holds the file's claim.
    func leaveHashing(_ record: ModelRecord) {
        hashing.remove(Self.key(record.type, record.name))
        logger.info("model hashed by another box", metadata: ["model": "\(record.name)", "type": "\(record.type.rawValue)"])
    }

    func finishHashing(_ record: ModelRecord, _ result: Result<String, any Error>) async {
        hashing.remove(Self.key(record.type, record.name))
        switch result {
        case .success(let sha256):
            var hashed = record
            hashed.etag = sha256
            hashed.status = .unloaded
            do {
                // Keep the record only if the file did not change while it was hashed.
                if let current = try await catalog.model(record.type, named: record.name),
                    FileFacts(type: record.type, name: record.name, size: record.size, modified: record.lastModificationTime).matches(current)
                {
                    try await save(hashed)
                    logger.info("model hashed", metadata: ["model": "\(record.name)", "type": "\(record.type.rawValue)", "sha256": "\(sha256)"])
                }
            } catch {
                logger.error("could not save model record", metadata: ["model": "\(record.name)", "error": "\(error)"])
            }
        case .failure(let error):
            logger.error("could not hash model", metadata: ["model": "\(record.name)", "error": "\(error)"])
        }
        // The claim goes once the record holds the hash, so that a box taking it next finds the hash.
        if shared {
            let (root, type, name) = (root, record.type, record.name)
            try? await threadPool.runIfActive { HashingClaim.release(root: root, type: type, name: name) }
        }
    }

    /// Follows the scheduler: a checkpoint whose workers failed to start is `failed` with the reason; once
    /// a worker for it starts again it is back to `unloaded` (its live state is read from the scheduler).
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
            try await save(record)
        } catch {
            logger.error("could not record model status", metadata: ["model": "\(name)", "error": "\(error)"])
        }
    }

    /// Every model record, from memory when read within ``recordsMaxAge``.
    func allRecords() async throws -> [ModelRecord] {
        if let records, records.readAt.duration(to: .now) < recordsMaxAge { return records.all }
        let before = writes
        let all = try await catalog.models()
        if writes == before { records = (all, .now) }
        return all
    }

    /// Writes a model record (and forgets the records read before).
    func save(_ record: ModelRecord) async throws {
        writes += 1
        records = nil
        try await catalog.save(record)
    }

    /// Removes a model record (and forgets the records read before).
    func removeRecord(_ type: ModelType, named name: String) async throws {
        writes += 1
        records = nil
        try await catalog.removeModel(type, named: name)
    }

    /// The records of the models there are, of one type or all (``deleted`` tombstones left out).
    public func models(type: ModelType? = nil) async throws -> [ModelRecord] {
        try await allRecords().filter { (type == nil || $0.type == type) && $0.status != .deleted }
            .sorted { ($0.type.rawValue, $0.name) < ($1.type.rawValue, $1.name) }
    }

    /// Finds a model the way A1111 does: by file name, name without extension, title (`name [hash]`), or
    /// short or full hash.
    public func resolve(_ reference: String, type: ModelType = .stableDiffusion) async throws -> ModelRecord? {
        let models = try await models(type: type)
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

    // MARK: Adding and removing files

    /// Reserves a name for an upload (or an install from a link, whose temporary file is `temporaryName`):
    /// refused if the name is bad, being uploaded, or taken (unless `overwrite`).
    package func beginUpload(type: ModelType, name: String, overwrite: Bool, temporaryName: String? = nil) throws -> ModelUpload {
        if let problem = ModelType.problem(withName: name) {
            throw APIError(.badRequest, "invalid model name", detail: problem, extra: ["field": "name"])
        }
        let key = Self.key(type, name)
        guard !uploading.contains(key) else {
            throw APIError(.conflict, "upload in progress", detail: "\(type.rawValue)/\(name) is being uploaded by another request")
        }
        let upload = ModelUpload(type: type, name: name, folder: folder(of: type), overwrite: overwrite, temporaryName: temporaryName)
        if !overwrite && FileManager.default.fileExists(atPath: upload.finalPath) {
            throw APIError(.conflict, "model exists", detail: "\(type.rawValue)/\(name) exists; add ?overwrite=true to replace it")
        }
        uploading.insert(key)
        return upload
    }

    /// Records a placed upload and releases its name.
    package func finishUpload(_ upload: ModelUpload, placed: ModelUpload.Placed) async throws -> ModelRecord {
        defer { uploading.remove(Self.key(upload.type, upload.name)) }
        let (checksums, path) = (self.checksums, upload.finalPath)
        try? await threadPool.runIfActive { checksums.remember(placed.sha256, forFileAt: path) }
        let record = ModelRecord(
            type: upload.type, name: upload.name, ossPath: upload.finalPath, etag: placed.sha256, status: .unloaded,
            size: placed.size, registeredTime: Date(), lastModificationTime: placed.modified
        )
        try await save(record)
        logger.info("model uploaded", metadata: ["model": "\(upload.name)", "type": "\(upload.type.rawValue)", "size": "\(placed.size)", "sha256": "\(placed.sha256)"])
        return record
    }

    /// Releases the name of an upload that failed (its temporary file is already gone).
    package func abandonUpload(_ upload: ModelUpload) {
        uploading.remove(Self.key(upload.type, upload.name))
    }

    /// Registers a file already on the box (or on an NFS share) in place: a symbolic link to it in the
    /// type's folder, hashed in the background.
    package func register(type: ModelType, path: String, name: String?) async throws -> ModelRecord {
        guard path.hasPrefix("/") else {
            throw APIError(.badRequest, "invalid request", detail: "field 'path' must be an absolute path", extra: ["field": "path"])
        }
        let name = name ?? (path as NSString).lastPathComponent
        if let problem = ModelType.problem(withName: name) {
            throw APIError(.badRequest, "invalid model name", detail: problem, extra: ["field": "name"])
        }
        let link = folder(of: type) + "/" + name
        let (target, facts) = try Self.modelFile(at: path, type: type, name: name, field: "path")
        guard target != link else { throw APIError(.conflict, "model exists", detail: "\(path) is already in the models folder") }
        guard symlink(target, link) == 0 else {
            if errno == EEXIST { throw APIError(.conflict, "model exists", detail: "\(type.rawValue)/\(name) exists") }
            throw APIError(.internalServerError, "cannot register", detail: "symlink \(link): \(String(cString: strerror(errno)))")
        }
        let record = ModelRecord(
            type: type, name: name, ossPath: link, etag: "", status: .registering, size: facts.size, registeredTime: Date(),
            lastModificationTime: facts.modified
        )
        try await save(record)
        startHashing(record)
        return record
    }

    /// The file at `path` (made absolute and normalised), with its size and time, if it is a readable
    /// model file: 400 naming `field` when it is missing or is not a checkpoint of its extension.
    static func modelFile(at path: String, type: ModelType, name: String, field: String) throws -> (target: String, facts: FileFacts) {
        let target = URL(fileURLWithPath: path).standardizedFileURL.path
        guard let facts = facts(type: type, name: name, path: target) else {
            throw APIError(.badRequest, "file not found", detail: "\(path) is not a readable regular file", extra: ["field": .string(field)])
        }
        do {
            try Checkpoint.validate(path: target, type: type)
        } catch {
            throw APIError(.badRequest, "invalid model file", detail: error.description, extra: ["field": .string(field)])
        }
        return (target, facts)
    }

    /// Removes a model's file (or its registration link) and its record together.
    package func delete(type: ModelType, name: String) async throws {
        let path = folder(of: type) + "/" + name
        guard ModelType.problem(withName: name) == nil, try await catalog.model(type, named: name) != nil || FileManager.default.fileExists(atPath: path) else {
            throw APIError(.notFound, "model not found", detail: "no \(type.rawValue) named '\(name)'")
        }
        try await threadPool.runIfActive {
            if unlink(path) != 0 && errno != ENOENT {
                throw APIError(.internalServerError, "cannot delete", detail: "\(path): \(String(cString: strerror(errno)))")
            }
        }
        try await removeRecord(type, named: name)
        logger.info("model deleted", metadata: ["model": "\(name)", "type": "\(type.rawValue)"])
    }
}

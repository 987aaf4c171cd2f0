import AsyncHTTPClient
import Foundation
import Glibc
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SDBoxCore
import ServiceLifecycle
import Storage

/// Installs models from links (`POST /admin/models/install`): each install is a job that asks the site
/// what the link names, downloads the file into a temporary file in the model's folder (at most
/// `models.maxConcurrentInstalls` at once), resumes with an HTTP `Range` request after a dropped
/// connection or a restart, checks the sha256 (the admin's, else the site's), the format and the type, and
/// then places and registers the file as an upload is. Jobs are kept in the catalogue, so a restart
/// resumes them; an admin can cancel one.
public actor ModelInstaller: Service {
    let registry: ModelRegistry
    let catalog: any CatalogStore
    let settings: ModelSettings
    /// The HTTP side, from ``run()`` on (installs wait in the queue until then).
    var fetcher: ModelFetcher?
    let logger: Logger
    let threadPool: NIOThreadPool

    /// Every install, newest last; finished ones beyond ``keptFinished`` are forgotten.
    var installs: [ModelInstall] = []
    /// The downloads under way.
    var running: [String: Task<Void, Never>] = [:]
    /// Installs an admin cancelled that are still stopping.
    var cancelling: Set<String> = []
    /// Whether sdbox is shutting down: stopped downloads keep their files and resume at the next start.
    var suspending = false

    /// Finished installs kept in the list.
    static let keptFinished = 100
    /// Tries in a row without a new byte before an install is given up.
    static let maxAttemptsWithoutProgress = 5
    /// The temporary file of an install, in its model's folder.
    static func temporaryName(of id: String) -> String { ".install-\(id).part" }

    public init(registry: ModelRegistry, catalog: any CatalogStore, settings: ModelSettings, logger: Logger, threadPool: NIOThreadPool = .singleton) {
        self.registry = registry
        self.catalog = catalog
        self.settings = settings
        self.logger = logger
        self.threadPool = threadPool
    }

    // MARK: Service

    /// Reads the installs a previous run left, before requests are served.
    public func load() async throws {
        installs = try await catalog.modelInstalls()
    }

    /// Resumes unfinished installs and removes the temporary files of ones that are over, then runs until
    /// graceful shutdown, when downloads stop and keep their files for the next start.
    public func run() async throws {
        let fetcher = ModelFetcher(http: try ModelFetcher.client(settings: settings), settings: settings)
        self.fetcher = fetcher
        var unfinished = 0
        for index in installs.indices where !installs[index].state.isFinal {
            installs[index].state = .queued
            unfinished += 1
        }
        if unfinished > 0 { logger.info("resuming model installs", metadata: ["count": "\(unfinished)"]) }
        await removeOrphanedFiles()
        pump()
        try? await gracefulShutdown()
        suspending = true
        let downloads = Array(running.values)
        for download in downloads { download.cancel() }
        for download in downloads { await download.value }
        try? await persist()
        try? await fetcher.http.shutdown()
    }

    /// Removes temporary files no unfinished install owns (a cancelled or failed one a crash cut short); in
    /// a models folder other boxes share, only those left alone for ``ModelRegistry/leftoverAge``.
    func removeOrphanedFiles() async {
        let owned = Set(installs.filter { !$0.state.isFinal }.map { Self.temporaryName(of: $0.id) })
        let folders = ModelType.allCases.map { registry.folder(of: $0) }
        let age = registry.leftoverAge
        try? await threadPool.runIfActive {
            for folder in folders {
                for entry in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
                where entry.hasPrefix(".install-") && !owned.contains(entry) && ModelUpload.isAbandoned(folder + "/" + entry, age: age) {
                    unlink(folder + "/" + entry)
                }
            }
        }
    }

    // MARK: Admin requests

    /// Starts an install: the link read, the fields checked (400), a name already taken refused (409)
    /// when the link names the file. The download goes on in the background.
    public func start(link: String, type: ModelType?, name: String?, sha256: String?, revision: String?, overwrite: Bool) async throws -> ModelInstall {
        let parsed = try ModelLink.parse(link, settings: settings)
        if case .url(let url) = parsed, !settings.allowPrivateNetworks, let refusal = OutboundTarget.modelDownloads.refusalWithoutLookup(of: url) {
            throw APIError(.badRequest, "address not allowed", detail: refusal, extra: ["field": "url"])
        }
        if let sha256, !sha256.isSHA256Hex {
            throw APIError(.badRequest, "invalid request", detail: "field 'sha256' must be 64 hex digits", extra: ["field": "sha256"])
        }
        let fileName = name ?? parsed.fileName ?? ""
        if let name, let problem = ModelType.problem(withName: name) {
            throw APIError(.badRequest, "invalid model name", detail: problem, extra: ["field": "name"])
        }
        if case .url = parsed, fileName.isEmpty {
            throw APIError(.badRequest, "invalid request", detail: "the URL names no model file (…/name.safetensors); give a 'name'", extra: ["field": "name"])
        }
        let chosenType = type ?? .stableDiffusion
        if !fileName.isEmpty, !overwrite, FileManager.default.fileExists(atPath: registry.folder(of: chosenType) + "/" + fileName) {
            throw APIError(.conflict, "model exists", detail: "\(chosenType.rawValue)/\(fileName) exists; set \"overwrite\": true to replace it")
        }
        let install = ModelInstall(
            id: UUID().uuidString.lowercased(), link: link, site: parsed.site, revision: revision, declaredType: type, name: fileName,
            overwrite: overwrite, sha256: sha256?.lowercased()
        )
        installs.append(install)
        try await persist()
        logger.info("model install queued", metadata: ["install": "\(install.id)", "link": "\(ModelFetcher.hostAndPath(link))"])
        pump()
        return installs.first { $0.id == install.id } ?? install
    }

    /// Every install, newest first.
    public func list() -> [ModelInstall] { installs.reversed() }

    /// One install.
    public func install(_ id: String) -> ModelInstall? { installs.first { $0.id == id } }

    /// Cancels an unfinished install (its file removed), or forgets a finished one. 404 for an unknown id.
    public func cancel(_ id: String) async throws -> ModelInstall {
        guard let index = installs.firstIndex(where: { $0.id == id }) else {
            throw APIError(.notFound, "install not found", detail: "no model install with id '\(id)'")
        }
        let install = installs[index]
        if install.state.isFinal {
            installs.remove(at: index)
            try await persist()
            return install
        }
        if let download = running[id] {
            cancelling.insert(id)
            download.cancel()
            await download.value
        } else {
            update(id) { $0.state = .cancelled; $0.finishedAt = Date() }
            try await persist()
        }
        return self.install(id) ?? install
    }

    // MARK: Running installs

    /// Starts queued installs, oldest first, while there are free download slots.
    func pump() {
        guard !suspending, fetcher != nil else { return }
        for install in installs where install.state == .queued && running[install.id] == nil {
            guard running.count < settings.maxConcurrentInstalls else { return }
            let id = install.id
            update(id) { $0.state = .downloading }
            running[id] = Task { await self.perform(id) }
        }
    }

    func update(_ id: String, _ change: (inout ModelInstall) -> Void) {
        guard let index = installs.firstIndex(where: { $0.id == id }) else { return }
        change(&installs[index])
    }

    func persist() async throws {
        let finished = installs.filter(\.state.isFinal)
        if finished.count > Self.keptFinished {
            let dropped = Set(finished.prefix(finished.count - Self.keptFinished).map(\.id))
            installs.removeAll { dropped.contains($0.id) }
        }
        try await catalog.saveModelInstalls(installs)
    }

    /// Runs one install to its end (or to a suspension at shutdown).
    func perform(_ id: String) async {
        guard var install = install(id), let fetcher else { return }
        var upload: ModelUpload?
        var writer: ModelFileWriter?
        do {
            let link = try ModelLink.parse(install.link, settings: settings)
            let resolved = try await link.resolve(with: fetcher, revision: install.revision)
            try Self.check(&install, against: resolved)
            update(id) { [install] in
                $0.name = install.name
                $0.type = install.type
                $0.sha256 = install.sha256
                $0.totalBytes = $0.totalBytes ?? resolved.size
                $0.downloadURL = ModelFetcher.hostAndPath(resolved.downloadURL)
            }
            try? await persist()
            let reserved = try await registry.beginUpload(type: install.type, name: install.name, overwrite: install.overwrite, temporaryName: Self.temporaryName(of: id))
            upload = reserved
            writer = try await reserved.open(limit: settings.maxUploadBytes, threadPool: threadPool, resuming: true)
            let published = try await download(id, from: resolved.downloadURL, with: fetcher, into: &writer!)
            update(id) { $0.state = .verifying; $0.bytesPerSecond = nil }
            let expected = install.sha256 ?? published
            let placed: ModelUpload.Placed
            do {
                placed = try await writer!.finish(expectedSHA256: expected)
            } catch {
                writer = nil
                throw error
            }
            writer = nil
            _ = try await registry.finishUpload(reserved, placed: placed)
            upload = nil
            update(id) { $0.state = .succeeded; $0.sha256 = placed.sha256; $0.receivedBytes = placed.size; $0.totalBytes = placed.size; $0.finishedAt = Date() }
            logger.info("model installed", metadata: ["install": "\(id)", "model": "\(install.name)", "sha256": "\(placed.sha256)"])
        } catch {
            await stopped(id, error: error, upload: upload, writer: &writer)
        }
        running[id] = nil
        cancelling.remove(id)
        try? await persist()
        pump()
    }

    /// Ends an install that did not finish: suspended at shutdown (its file kept), cancelled, or failed.
    func stopped(_ id: String, error: any Error, upload: ModelUpload?, writer: inout ModelFileWriter?) async {
        if suspending && !cancelling.contains(id) {
            await writer?.suspend()
            if let upload { await registry.abandonUpload(upload) }
            update(id) { $0.state = .queued; $0.bytesPerSecond = nil }
            return
        }
        await writer?.abort()
        if writer == nil { await removeTemporaryFile(of: id) }
        if let upload { await registry.abandonUpload(upload) }
        if cancelling.contains(id) {
            update(id) { $0.state = .cancelled; $0.bytesPerSecond = nil; $0.finishedAt = Date() }
            logger.info("model install cancelled", metadata: ["install": "\(id)"])
            return
        }
        let reason = (error as? APIError).map { $0.detail.isEmpty ? $0.error : $0.detail } ?? "\(error)"
        update(id) { $0.state = .failed; $0.error = reason; $0.bytesPerSecond = nil; $0.finishedAt = Date() }
        logger.warning("model install failed", metadata: ["install": "\(id)", "error": "\(reason)"])
    }

    /// Removes an install's temporary file (one that never got a writer).
    func removeTemporaryFile(of id: String) async {
        let paths = ModelType.allCases.map { registry.folder(of: $0) + "/" + Self.temporaryName(of: id) }
        _ = try? await threadPool.runEvenIfCancelled { for path in paths { unlink(path) } }
    }

    /// Fills in what the site says of the file, and refuses what contradicts the admin.
    static func check(_ install: inout ModelInstall, against resolved: ModelLink.Resolved) throws {
        if let siteType = resolved.type {
            if let declared = install.declaredType, declared != siteType {
                throw ModelFetchError.permanent("the link is a \(siteType.displayName) on Civitai, not a \(declared.displayName)")
            }
            install.type = siteType
        }
        if install.name.isEmpty { install.name = resolved.fileName ?? "" }
        if let problem = ModelType.problem(withName: install.name) {
            throw ModelFetchError.permanent("the site names the file '\(install.name)': \(problem); give a 'name'")
        }
        if let published = resolved.sha256, let wanted = install.sha256, published != wanted {
            throw ModelFetchError.permanent("the site publishes sha256 \(published) for this file, not the expected \(wanted)")
        }
        install.sha256 = install.sha256 ?? resolved.sha256
    }

    /// Downloads the file into `writer` from where it stands, retrying a dropped connection from there;
    /// returns the sha256 the site published, if it did.
    func download(_ id: String, from url: String, with fetcher: ModelFetcher, into writer: inout ModelFileWriter) async throws -> String? {
        var failuresInARow = 0
        while true {
            try Task.checkCancellation()
            let before = writer.received
            update(id) { $0.attempts += 1; $0.receivedBytes = before }
            do {
                return try await transfer(id, from: url, with: fetcher, into: &writer)
            } catch let error as ModelFetchError where error.isTransient {
                try Task.checkCancellation()
                failuresInARow = writer.received > before ? 1 : failuresInARow + 1
                guard failuresInARow < Self.maxAttemptsWithoutProgress else { throw error }
                logger.notice("model download interrupted; resuming", metadata: ["install": "\(id)", "at": "\(writer.received)", "error": "\(error)"])
                try await Task.sleep(for: .seconds(1 << (failuresInARow - 1)))
            }
        }
    }

    /// One request for the rest of the file.
    func transfer(_ id: String, from url: String, with fetcher: ModelFetcher, into writer: inout ModelFileWriter) async throws -> String? {
        let offset = writer.received
        let opened = try await fetcher.open(url, from: offset)
        let code = opened.response.status.code
        var total: Int64?
        switch code {
        case 206:
            guard let range = opened.response.headers.first(name: "Content-Range"), let (start, length) = Self.contentRange(range), start == offset else {
                throw ModelFetchError.permanent("\(ModelFetcher.hostAndPath(opened.url)) answered a range that does not start at byte \(offset)")
            }
            total = length
        case 200:
            if offset > 0 { try await writer.startOver() }
            total = opened.response.headers.first(name: "Content-Length").flatMap { Int64($0) }
        case 416 where offset > 0:
            // The file changed, or we have it all: start over (a whole file's hash is checked anyway).
            try await writer.startOver()
            throw ModelFetchError.transient("\(ModelFetcher.hostAndPath(opened.url)) refused the range from byte \(offset)")
        case 401, 403:
            throw ModelFetchError.permanent("\(ModelFetcher.hostAndPath(opened.url)) answered \(code): the file needs a token (models.huggingFaceToken or models.civitaiToken) or is not shared")
        case 408, 425, 429, 500...599:
            throw ModelFetchError.transient("\(ModelFetcher.hostAndPath(opened.url)) answered \(code)")
        default:
            throw ModelFetchError.permanent("\(ModelFetcher.hostAndPath(opened.url)) answered \(code)")
        }
        if let total { try await checkRoom(for: total, have: writer.received, in: writer.upload.folder) }
        update(id) { $0.totalBytes = total ?? $0.totalBytes }
        var meter = TransferMeter(start: writer.received)
        do {
            for try await buffer in opened.response.body {
                try Task.checkCancellation()
                try await writer.append(buffer)
                if let sample = meter.sample(writer.received) {
                    update(id) { $0.receivedBytes = sample.bytes; $0.bytesPerSecond = sample.speed }
                }
            }
        } catch let error as APIError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw ModelFetchError.transient("the download from \(ModelFetcher.hostAndPath(opened.url)) stopped at byte \(writer.received): \(error)")
        }
        try Task.checkCancellation()
        update(id) { $0.receivedBytes = writer.received }
        if let total, writer.received < total {
            throw ModelFetchError.transient("the download from \(ModelFetcher.hostAndPath(opened.url)) stopped at byte \(writer.received) of \(total)")
        }
        return opened.publishedSHA256
    }

    /// Refuses a file over `models.maxUploadBytes` or larger than the free space of its folder.
    func checkRoom(for total: Int64, have: Int64, in folder: String) async throws {
        if total > settings.maxUploadBytes {
            throw ModelFetchError.permanent("the file is \(total) bytes, over the limit of \(settings.maxUploadBytes) (models.maxUploadBytes)")
        }
        let free = try await threadPool.runIfActive { () -> Int64 in
            var info = statvfs()
            return statvfs(folder, &info) == 0 ? Int64(info.f_bavail) * Int64(info.f_frsize) : .max
        }
        if total - have > free {
            throw ModelFetchError.permanent("the file needs \(total - have) more bytes; the models folder has \(free) free")
        }
    }

    /// The first byte and the whole length of a `Content-Range: bytes a-b/n` header.
    static func contentRange(_ header: String) -> (start: Int64, length: Int64?)? {
        let text = header.trimmingCharacters(in: .whitespaces)
        guard text.lowercased().hasPrefix("bytes ") else { return nil }
        let parts = text.dropFirst(6).split(separator: "/", maxSplits: 1)
        guard parts.count == 2, let start = parts[0].split(separator: "-").first.flatMap({ Int64($0) }) else { return nil }
        return (start, Int64(parts[1]))
    }
}

/// The speed of a download, sampled at most four times a second and smoothed.
struct TransferMeter {
    var lastBytes: Int64
    var lastTime = ContinuousClock.now
    var speed: Double?

    init(start: Int64) { lastBytes = start }

    /// The bytes and speed to report now, or nil when the last report is too recent.
    mutating func sample(_ bytes: Int64) -> (bytes: Int64, speed: Double?)? {
        let now = ContinuousClock.now
        let elapsed = lastTime.duration(to: now)
        guard elapsed >= .milliseconds(250) else { return nil }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let current = Double(bytes - lastBytes) / seconds
        speed = speed.map { 0.7 * $0 + 0.3 * current } ?? current
        lastBytes = bytes
        lastTime = now
        return (bytes, speed)
    }
}

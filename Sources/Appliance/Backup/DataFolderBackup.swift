import Archive
import Foundation
import ObjectStore
import Storage

/// Why a backup or restore could not be made: a message for the operator.
public struct BackupError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// `sdbox backup` and `sdbox restore`: a data folder to one tar archive and back, while sdbox runs.
///
/// A backup holds, after its ``BackupManifest``: `db/data.mdb` (a consistent copy of the database, taken
/// first, with ``LMDBEnvironment/copy(environmentAt:to:)``), the URL-signing and webhook secrets and
/// `styles.csv`, the configuration file as `sdbox.yaml` when one is named, every file of `objects/`
/// (images, thumbnails, passthrough answers, uploaded inputs), and with models, every file of `models/`
/// with its checksum cache. Because a task's images are stored before its record commits, every image
/// the database copy names is already on disk when the files are walked; images of tasks that finish
/// later may be in the archive too, unnamed by any record (as after a crash). Temporary files (hidden
/// names) are left out, and files removed during the walk (retention) are skipped.
///
/// Paths in the archive are the data folder's own, so a restore writes each member at its path under the
/// new folder, each through a temporary file, fsync and rename, with its permissions and modification
/// time (which the model catalogue compares, so restored checkpoints are not hashed again).
public enum DataFolderBackup {
    /// The configuration file's name in a backup and in the restored data folder.
    public static let configurationName = "sdbox.yaml"

    /// What a backup wrote.
    public struct BackupSummary: Sendable {
        public var manifest: BackupManifest
        /// Bytes of the database copy.
        public var databaseBytes: Int64 = 0
        /// Files of `objects/` and of `models/` archived, and their bytes.
        public var objectFiles = 0
        public var objectBytes: Int64 = 0
        public var modelFiles = 0
        public var modelBytes: Int64 = 0
        /// Files listed but gone before they were read (removed by retention meanwhile).
        public var vanished = 0
        /// The archive's size.
        public var archiveBytes: Int64 = 0
    }

    /// What a restore wrote.
    public struct RestoreSummary: Sendable {
        public var manifest: BackupManifest
        public var files = 0
        public var bytes: Int64 = 0
        /// The records of the restored database, counted once it opened.
        public var counts: Database.Counts
    }

    // MARK: Backup

    /// Writes a backup of the data folder `folder` to the new file `output` (refused if it exists), with
    /// the configuration file `configurationFile` if given and the models with `withModels`. The archive is
    /// written beside `output` under a temporary name and renamed when complete, so a failed backup leaves
    /// nothing. Blocks on the disk throughout.
    public static func backup(
        of folder: DataFolder, configurationFile: String?, withModels: Bool, to output: String
    ) throws -> BackupSummary {
        let output = URL(fileURLWithPath: output).standardizedFileURL.path
        guard FileManager.default.fileExists(atPath: folder.database + "/data.mdb") else {
            throw BackupError("no sdbox database in \(folder.path) (\(folder.database)/data.mdb): is that the data folder?")
        }
        guard !FileManager.default.fileExists(atPath: output) else { throw BackupError("\(output) exists; name a new file") }
        if output.hasPrefix(folder.path + "/") { throw BackupError("write the backup outside the data folder \(folder.path)") }
        let outputFolder = (output as NSString).deletingLastPathComponent
        let temporary = outputFolder + "/." + (output as NSString).lastPathComponent + ".partial-\(getpid())"
        let databaseCopy = temporary + ".data.mdb"
        defer { unlink(databaseCopy) }

        // The database first: every file a record in it names is on disk by now.
        do {
            try LMDBEnvironment.copy(environmentAt: folder.database, to: databaseCopy)
        } catch {
            throw BackupError("cannot copy the database \(folder.database): \(error)")
        }
        var contents = ["database", "objects"]
        let secrets = [folder.urlSigningKey, folder.webhookSecret].filter { FileManager.default.fileExists(atPath: $0) }
        if !secrets.isEmpty { contents.append("secrets") }
        if FileManager.default.fileExists(atPath: folder.styles) { contents.append("styles") }
        if configurationFile != nil { contents.append("configuration") }
        if withModels { contents.append("models") }
        let manifest = BackupManifest(
            createdAt: Date(), dataDirectory: folder.path,
            configurationFile: configurationFile.map { URL(fileURLWithPath: $0).standardizedFileURL.path }, contents: contents
        )
        var summary = BackupSummary(manifest: manifest)

        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BackupError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        do {
            let tar = TarWriter(fileDescriptor: fd)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            try tar.add(try encoder.encode(manifest), as: BackupManifest.fileName, modified: timespec(tv_sec: Int(Date().timeIntervalSince1970), tv_nsec: 0))
            summary.databaseBytes = try tar.addFile(atPath: databaseCopy, as: DataFolder.databaseFolder + "/data.mdb") ?? 0
            for secret in secrets + [folder.styles] {
                try tar.addFile(atPath: secret, as: (secret as NSString).lastPathComponent)
            }
            if let configurationFile {
                guard try tar.addFile(atPath: configurationFile, as: configurationName) != nil else {
                    throw BackupError("the configuration file \(configurationFile) is not there")
                }
            }
            try archiveFolder(folder.objects, as: DataFolder.objectsFolder, into: tar, keeping: [], files: &summary.objectFiles, bytes: &summary.objectBytes, vanished: &summary.vanished)
            if withModels {
                try archiveFolder(
                    folder.models, as: DataFolder.modelsFolder, into: tar, keeping: [ChecksumCache.defaultFileName],
                    files: &summary.modelFiles, bytes: &summary.modelBytes, vanished: &summary.vanished
                )
            }
            try tar.finish()
            summary.archiveBytes = tar.bytesWritten
            guard fsync(fd) == 0 else { throw BackupError("cannot sync \(temporary): \(String(cString: strerror(errno)))") }
            guard close(fd) == 0 else { throw BackupError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        } catch {
            close(fd)
            unlink(temporary)
            if let error = error as? BackupError { throw error }
            throw BackupError("cannot write \(output): \(error)")
        }
        guard !FileManager.default.fileExists(atPath: output), rename(temporary, output) == 0 else {
            let reason = FileManager.default.fileExists(atPath: output) ? "it appeared meanwhile" : String(cString: strerror(errno))
            unlink(temporary)
            throw BackupError("cannot name the backup \(output): \(reason)")
        }
        ObjectStore.syncFolder(outputFolder)
        return summary
    }

    /// Adds every regular file under `source` (sorted, recursively) as `prefix/<relative path>`; hidden
    /// names (temporary files) are left out unless listed in `keeping`. Symbolic links to files (models
    /// registered from elsewhere) are archived as the files they lead to.
    static func archiveFolder(
        _ source: String, as prefix: String, into tar: TarWriter, keeping: Set<String>, files: inout Int, bytes: inout Int64, vanished: inout Int
    ) throws {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: source) else { return }
        for name in names.sorted() where !name.hasPrefix(".") || keeping.contains(name) {
            let path = source + "/" + name
            var status = stat()
            guard lstat(path, &status) == 0 else {
                vanished += 1
                continue
            }
            if (status.st_mode & S_IFMT) == S_IFDIR {
                try archiveFolder(path, as: prefix + "/" + name, into: tar, keeping: keeping, files: &files, bytes: &bytes, vanished: &vanished)
                continue
            }
            if let size = try tar.addFile(atPath: path, as: prefix + "/" + name) {
                files += 1
                bytes += size
            } else if stat(path, &status) != 0 {
                vanished += 1
            }
        }
    }

    // MARK: Restore

    /// Restores the backup `archive` into `folder`, which must be missing or empty; then opens the restored
    /// database and counts its records. On any failure, what was written is removed again.
    public static func restore(from archive: String, into folder: DataFolder) async throws -> RestoreSummary {
        let created = try prepareEmptyFolder(folder.path)
        do {
            var summary = try extract(archive, into: folder)
            do {
                summary.counts = try await Database(path: folder.database).counts()
            } catch {
                throw BackupError("the restored database does not open: \(error)")
            }
            return summary
        } catch {
            removeContents(of: folder.path, andFolder: created)
            throw error
        }
    }

    /// Refuses a folder that holds anything; makes it if missing. Returns whether it made it.
    static func prepareEmptyFolder(_ path: String) throws -> Bool {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) {
            guard isFolder.boolValue else { throw BackupError("\(path) is a file, not a folder") }
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            guard entries.isEmpty else {
                throw BackupError("\(path) is not empty (\(entries.count) entries): restore into a new or empty folder")
            }
            return false
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        } catch {
            throw BackupError("cannot make \(path): \(error.localizedDescription)")
        }
        return true
    }

    static func extract(_ archive: String, into folder: DataFolder) throws -> RestoreSummary {
        let fd = open(archive, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BackupError("cannot read \(archive): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let tar = TarReader(fileDescriptor: fd)
        let manifest: BackupManifest
        do {
            guard let first = try tar.next(), first.path == BackupManifest.fileName else { throw TarError("no \(BackupManifest.fileName) first") }
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            manifest = try decoder.decode(BackupManifest.self, from: try tar.readContents(limit: 1 << 20))
        } catch {
            throw BackupError("\(archive) is not an sdbox backup: \(error)")
        }
        guard manifest.createdBy == "sdbox", manifest.format == BackupManifest.currentFormat else {
            throw BackupError("\(archive) is a backup of format \(manifest.format), which this sdbox does not read (it reads \(BackupManifest.currentFormat))")
        }
        var summary = RestoreSummary(manifest: manifest, counts: Database.Counts(tasks: 0, models: 0, keys: 0, users: 0))
        var folders: Set<String> = []
        do {
            while let entry = try tar.next() {
                let destination = folder.path + "/" + entry.path
                let parent = (destination as NSString).deletingLastPathComponent
                try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
                try write(entry, from: tar, to: destination)
                folders.insert(parent)
                summary.files += 1
                summary.bytes += entry.size
            }
        } catch let error as BackupError {
            throw error
        } catch {
            throw BackupError("cannot restore \(archive): \(error)")
        }
        guard FileManager.default.fileExists(atPath: folder.database + "/data.mdb") else {
            throw BackupError("\(archive) holds no database (\(DataFolder.databaseFolder)/data.mdb)")
        }
        for parent in folders { ObjectStore.syncFolder(parent) }
        ObjectStore.syncFolder(folder.path)
        return summary
    }

    /// Writes the current member to `destination` through a temporary file beside it: contents, mode and
    /// modification time, fsync, then rename. A member whose path is already there (the same path twice
    /// in an archive) is an error.
    static func write(_ entry: TarEntry, from tar: TarReader, to destination: String) throws {
        guard access(destination, F_OK) != 0 else { throw BackupError("the archive holds \(entry.path) twice") }
        let temporary = (destination as NSString).deletingLastPathComponent + "/.tmp-restore-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(entry.mode & 0o777))
        guard fd >= 0 else { throw BackupError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        do {
            try tar.copyContents(to: fd)
            var times = [entry.modified, entry.modified]
            guard fchmod(fd, mode_t(entry.mode & 0o777)) == 0, futimens(fd, &times) == 0, fsync(fd) == 0 else {
                throw BackupError("cannot write \(destination): \(String(cString: strerror(errno)))")
            }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        guard close(fd) == 0, rename(temporary, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw BackupError("cannot write \(destination): \(reason)")
        }
    }

    /// Removes what a failed restore wrote: everything in `path`, and `path` itself if the restore made it.
    static func removeContents(of path: String, andFolder removeFolder: Bool) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            try? FileManager.default.removeItem(atPath: path + "/" + name)
        }
        if removeFolder { rmdir(path) }
    }
}

import Appliance
import ArgumentParser
import Foundation
import Storage

/// `sdbox backup`: the database (a consistent copy, taken while sdbox runs), secrets, styles, the
/// configuration file, images and thumbnails, and with `--with-models` the models, in one tar archive.
struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a backup of a data folder to a tar archive; sdbox may keep running.",
        discussion: """
            The archive holds a consistent copy of the database (taken first), the URL-signing and webhook \
            secrets, styles.csv, the configuration file named by --config (as sdbox.yaml), and every image, \
            thumbnail and uploaded input. Models are large: they are included only with --with-models; \
            without it, copy the models folder yourself and put it back before starting a restored box (a \
            model whose file is missing at start is dropped from the list). Restore with `sdbox restore`.
            """
    )

    @Option(help: "The configuration file sdbox serve reads (archived, and its dataDir used unless --data-dir is given).")
    var config: String?

    @Option(help: "The data folder (default: the configuration's dataDir, $SDBOX_DATA_DIR, else ./sdbox-data).")
    var dataDir: String?

    @Flag(help: "Include the model files (models/, with their checksum cache).")
    var withModels = false

    @Argument(help: "The archive to write (a new file, outside the data folder).")
    var output: String

    func run() async throws {
        var configuration = try ConfigurationOptions.read(file: config)
        if let dataDir { configuration.dataDirectory = dataDir }
        let summary: DataFolderBackup.BackupSummary
        do {
            summary = try DataFolderBackup.backup(
                of: DataFolder(configuration), configurationFile: config, withModels: withModels, to: output
            )
        } catch let error as BackupError {
            throw ValidationError(error.description)
        }
        print("database: \(megabytes(summary.databaseBytes))")
        print("objects: \(summary.objectFiles) files, \(megabytes(summary.objectBytes))" + (summary.vanished > 0 ? " (\(summary.vanished) removed during the backup, skipped)" : ""))
        if withModels {
            print("models: \(summary.modelFiles) files, \(megabytes(summary.modelBytes))")
        } else {
            print("models: not included (--with-models); keep a copy of \(DataFolder(configuration).models) to restore beside this backup")
        }
        print("wrote \(output) (\(megabytes(summary.archiveBytes)); \(summary.manifest.contents.joined(separator: ", ")))")
    }
}

/// `sdbox restore`: a backup into a new or empty data folder.
struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a backup made by `sdbox backup` into a new or empty data folder.",
        discussion: """
            Refuses a data folder that holds anything, and an archive that is not an sdbox backup or has an \
            unsafe path. The backup's configuration file, if it has one, is restored as <data-dir>/sdbox.yaml: \
            start the box with `sdbox serve --config <data-dir>/sdbox.yaml --data-dir <data-dir>` (or copy it \
            where your service reads it). A backup without models needs the models folder copied back into \
            <data-dir>/models before the box starts.
            """
    )

    @Option(help: "The data folder to restore into: it must not exist, or be empty.")
    var dataDir: String

    @Argument(help: "The archive `sdbox backup` wrote.")
    var archive: String

    func run() async throws {
        let folder = DataFolder(dataDir)
        let summary: DataFolderBackup.RestoreSummary
        do {
            summary = try await DataFolderBackup.restore(from: archive, into: folder)
        } catch let error as BackupError {
            throw ValidationError(error.description)
        }
        let manifest = summary.manifest
        print("restored \(summary.files) files, \(megabytes(summary.bytes)), into \(folder.path)")
        print("backup of \(manifest.dataDirectory) taken \(manifest.createdAt.ISO8601Format()): \(manifest.contents.joined(separator: ", "))")
        let counts = summary.counts
        print("database: \(counts.tasks) tasks, \(counts.models) models, \(counts.keys) API keys, \(counts.users) users")
        if let file = manifest.configurationFile {
            print("configuration (was \(file)): \(folder.path)/\(DataFolderBackup.configurationName)")
        }
        if !manifest.contents.contains("models") {
            print("models: not in this backup; copy the models folder to \(folder.models) before starting sdbox, or models whose files are missing are dropped from the list")
        }
    }
}

/// A byte count in MiB, one decimal.
private func megabytes(_ bytes: Int64) -> String {
    String(format: "%.1f MiB", Double(bytes) / 1_048_576)
}

import Foundation
import SDBoxCore

/// A mark, in a models folder several boxes share, that one box is hashing a file, so that the others do
/// not read the same gigabytes again: the file `.sdbox-hashing/<type>-<name>` in the models root, created
/// exclusively (`O_EXCL`, which NFS since version 3 honours). A mark older than ``staleAfter`` belongs to a
/// box that died while hashing, and is taken over.
///
/// Its functions block on the disk: call them from a thread pool.
enum HashingClaim {
    /// How old a mark may be before it counts as left by a box that died.
    static let staleAfter: TimeInterval = 3600

    static func path(root: String, type: ModelType, name: String) -> String {
        root + "/.sdbox-hashing/\(type.rawValue)-\(name)"
    }

    /// Takes the mark for a file; false when another box holds it.
    static func take(root: String, type: ModelType, name: String) -> Bool {
        let path = path(root: root, type: type, name: name)
        try? FileManager.default.createDirectory(atPath: root + "/.sdbox-hashing", withIntermediateDirectories: true)
        for _ in 0..<2 {
            let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            if descriptor >= 0 {
                close(descriptor)
                return true
            }
            guard errno == EEXIST,
                let made = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                Date().timeIntervalSince(made) > staleAfter
            else { return false }
            unlink(path)
        }
        return false
    }

    /// Gives the mark back.
    static func release(root: String, type: ModelType, name: String) {
        unlink(path(root: root, type: type, name: name))
    }
}

import Foundation
import HTTPTypes
import Logging
import NIOPosix
import SDBoxCore
import Storage

/// The original's model registry (`POST|PUT|DELETE /models/{name}`): a model named without its type, an
/// `ossPath` that may be a key in the object store, a path under the models folder or a path on the box,
/// re-pointing a registered model, and deletion that keeps the record as `deleted`.
extension ModelRegistry {
    /// The types searched, in order, for a model named without one.
    static let typeOrder: [ModelType] = [.stableDiffusion, .sdVae, .lora, .controlNet, .embedding, .upscaler]

    /// The record of `name` (of `type`, else of the first type that has it), `deleted` ones included.
    package func record(named name: String, type: ModelType?) async throws -> ModelRecord? {
        let records = try await catalog.models().filter { $0.name == name }
        for candidate in type.map({ [$0] }) ?? Self.typeOrder {
            if let record = records.first(where: { $0.type == candidate }) { return record }
        }
        return nil
    }

    /// The file an `ossPath` names: an absolute path on the box; else a key of the object store whose file
    /// exists; else a path under the models folder (a leading `models/` dropped, as the original's bucket
    /// laid them out). 400 naming `ossPath` when none is a file.
    package func file(forOSSPath ossPath: String, objectsRoot: String) throws -> String {
        func refusal(_ detail: String) -> APIError {
            APIError(.badRequest, "invalid ossPath", detail: detail, extra: ["field": "ossPath"])
        }
        guard !ossPath.isEmpty, !ossPath.split(separator: "/").contains("..") else { throw refusal("'\(ossPath)' is not a path") }
        if ossPath.hasPrefix("/") { return ossPath }
        let underModels = ossPath.hasPrefix("models/") ? String(ossPath.dropFirst("models/".count)) : ossPath
        for candidate in [objectsRoot + "/" + ossPath, root + "/" + underModels] where Self.facts(type: .stableDiffusion, name: "", path: candidate) != nil {
            return candidate
        }
        throw refusal("please check oss model valid: '\(ossPath)' is neither a key in the object store, a file under the models folder, nor an absolute path")
    }

    /// Points a registered model at another file: its link is replaced at once (a new link renamed over
    /// it) and the file hashed again. An uploaded model's file is replaced by the link.
    package func repoint(_ record: ModelRecord, to path: String) async throws -> ModelRecord {
        let (target, facts) = try Self.modelFile(at: path, type: record.type, name: record.name, field: "ossPath")
        let link = folder(of: record.type) + "/" + record.name
        let temporary = link + ".repoint-\(UUID().uuidString)"
        try await threadPool.runIfActive {
            guard symlink(target, temporary) == 0 else {
                throw APIError(.internalServerError, "cannot register", detail: "symlink \(temporary): \(String(cString: strerror(errno)))")
            }
            guard rename(temporary, link) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(temporary)
                throw APIError(.internalServerError, "cannot register", detail: "rename to \(link): \(reason)")
            }
        }
        var updated = record
        updated.ossPath = link
        updated.etag = ""
        updated.status = .registering
        updated.error = nil
        updated.size = facts.size
        updated.lastModificationTime = facts.modified
        try await save(updated)
        startHashing(updated)
        return updated
    }

    /// Whether a registered model's file (the target of its link, or the file itself) is the file at `path`.
    package nonisolated func model(_ record: ModelRecord, isFileAt path: String) -> Bool {
        URL(fileURLWithPath: folder(of: record.type) + "/" + record.name).resolvingSymlinksInPath().path
            == URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    }

    /// Removes a model's file (or link) and keeps its record as `deleted`, as the original does.
    package func markDeleted(_ record: ModelRecord) async throws -> ModelRecord {
        let path = folder(of: record.type) + "/" + record.name
        try await threadPool.runIfActive {
            if unlink(path) != 0 && errno != ENOENT {
                throw APIError(.internalServerError, "cannot delete", detail: "\(path): \(String(cString: strerror(errno)))")
            }
        }
        var tombstone = record
        tombstone.status = .deleted
        tombstone.lastModificationTime = Date()
        try await save(tombstone)
        logger.info("model deleted", metadata: ["model": "\(record.name)", "type": "\(record.type.rawValue)", "record": "kept as deleted"])
        return tombstone
    }
}

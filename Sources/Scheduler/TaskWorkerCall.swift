import Foundation
import NIOHTTP1
import ObjectStore
import SDBoxCore

extension WorkerCall {
    /// What a task sends to its worker: a generation's or extras' validated body to its endpoint, or a
    /// passthrough call as it was persisted.
    ///
    /// - Parameter checkpoint: For a worker that may hold other checkpoints (a remote server others use
    ///   too), the checkpoint a generation must run on, sent in its `override_settings` (A1111 loads it
    ///   for the request and restores its own after) unless the caller set one.
    init(task: TaskRecord, checkpoint: String? = nil) throws {
        switch task.kind {
        case .txt2img, .img2img, .extraSingleImage, .extraBatchImages:
            var body = task.workerRequest
            if let checkpoint, task.kind == .txt2img || task.kind == .img2img, case .object(var fields) = body {
                var overrides = fields["override_settings"]?.objectValue ?? [:]
                if overrides["sd_model_checkpoint"] == nil { overrides["sd_model_checkpoint"] = .string(checkpoint) }
                fields["override_settings"] = .object(overrides)
                body = .object(fields)
            }
            self.init(method: .POST, path: task.kind.workerPath, contentType: "application/json", body: try body.encoded())
        case .passthrough:
            let request = try PassthroughRequest(task.request)
            // A call stored by an older sdbox was not judged as calls are now: its path must be one read
            // the way `WorkerPath` writes it, and not an A1111 endpoint sdbox keeps from the workers.
            let path = String(request.path.prefix { $0 != "?" })
            let judged = try WorkerPath(raw: path)
            guard judged.encoded == path, !judged.isWorkerInternal, judged.a1111Endpoint == nil || judged.isForwardedA1111(method: request.method)
            else {
                throw WorkerPathError.notForwarded(judged.decoded)
            }
            self.init(
                method: HTTPMethod(rawValue: request.method), path: request.path, contentType: request.contentType,
                headers: request.headers ?? [:], body: try request.bodyData
            )
        }
    }
}

/// How a passthrough task's answer is kept: a JSON answer as the worker gave it, with each base64 image
/// in it moved to the object store (`images/<user>/<taskId>_<n>.<png|jpg|webp|gif>`) and replaced by its
/// key; an image answer as image 1; any other answer as an object `responses/<user>/<taskId>`.
enum PassthroughResult {
    static func store(_ answer: WorkerResponse, of task: TaskRecord, in objects: ObjectStore) async throws -> TaskResult {
        var result = TaskResult(images: [], info: .null, parameters: .null, status: answer.status, contentType: answer.contentType)
        let type = answer.contentType?.lowercased() ?? ""
        if type.contains("json"), let json = try? JSONValue(parsing: answer.body) {
            let (response, images) = EmbeddedImages.extract(from: json) { index, fileExtension in
                ObjectKey.image(user: task.user, taskID: task.id, index: index, fileExtension: fileExtension)
            }
            for image in images { try await objects.put(image.data, key: image.key) }
            result.images = images.map(\.key)
            result.response = response
        } else if type.hasPrefix("image/"), let fileExtension = EmbeddedImages.fileExtension(of: answer.body) {
            let key = ObjectKey.image(user: task.user, taskID: task.id, index: 1, fileExtension: fileExtension)
            try await objects.put(answer.body, key: key)
            result.images = [key]
            result.bodyKey = key
        } else {
            let key = ObjectKey.response(user: task.user, taskID: task.id)
            try await objects.put(answer.body, key: key)
            result.bodyKey = key
        }
        return result
    }
}

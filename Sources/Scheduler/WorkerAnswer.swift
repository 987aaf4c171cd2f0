import Foundation
import SDBoxCore

/// A worker's answer to a task, read according to the task's kind: the images it made (base64) and what
/// the task records beside them. Callers of the A1111 API get it as it comes (``TaskRunner/waitForAnswer(_:)``).
public struct WorkerAnswer: Sendable {
    /// The images, base64, as the worker sent them.
    public var images: [String]
    /// A1111's `info`, parsed from its JSON string, with sdbox's additions.
    public var info: JSONValue
    public var parameters: JSONValue

    /// Reads txt2img/img2img answers (`images`, `parameters`, `info` as a JSON string) and extras answers
    /// (`image` or `images`, with `html_info`). An extras task records its request without the image
    /// data as its parameters.
    init(kind: TaskKind, answer: Data, request: JSONValue) throws {
        let decoder = JSONDecoder()
        switch kind {
        case .txt2img, .img2img:
            let response = try decoder.decode(A1111.GenerationResponse.self, from: answer)
            images = response.images
            info = (try? JSONValue(parsing: Data(response.info.utf8))) ?? .string(response.info)
            parameters = response.parameters
            if let additions = request[TaskRecord.infoAdditionsKey]?.objectValue { add(additions) }
        case .extraSingleImage:
            let response = try decoder.decode(A1111.ExtrasSingleImageResponse.self, from: answer)
            images = [response.image]
            info = ["html_info": .string(response.html_info)]
            parameters = request
            parameters["image"] = nil
        case .extraBatchImages:
            let response = try decoder.decode(A1111.ExtrasBatchImagesResponse.self, from: answer)
            images = response.images
            info = ["html_info": .string(response.html_info)]
            parameters = request
            parameters["imageList"] = request["imageList"]?.arrayValue.map { list in
                .array(list.map { item in .object(["name": item["name"] ?? .null]) })
            }
        case .passthrough:
            // A passthrough call's answer is kept as the worker gave it (PassthroughResult), never read here.
            throw WorkerCallError.rejected(status: 200, detail: "a passthrough answer is not a generation's")
        }
    }

    /// Adds sdbox's fields to `info`; `comments` are appended to the worker's, as A1111 joins its comments.
    mutating func add(_ additions: [String: JSONValue]) {
        guard case .object(var fields) = info else { return }
        for (key, value) in additions {
            if key == "comments", let own = fields[key]?.stringValue, let added = value.stringValue {
                fields[key] = .string(own + added)
            } else {
                fields[key] = value
            }
        }
        info = .object(fields)
    }
}

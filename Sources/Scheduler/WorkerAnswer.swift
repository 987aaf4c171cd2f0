import Foundation
import SDBoxCore

/// A worker's answer to a task, read according to the task's kind: the images it made (base64) and what
/// the task records beside them.
struct WorkerAnswer {
    /// The images, base64, as the worker sent them.
    var images: [String]
    /// A1111's `info`, parsed from its JSON string, with sdbox's additions.
    var info: JSONValue
    var parameters: JSONValue

    /// Reads txt2img/img2img answers (`images`, `parameters`, `info` as a JSON string) and extras answers
    /// (`image` or `images`, with `html_info`). An extras task records its request without the image
    /// data as its parameters.
    init(kind: TaskKind, answer: Data, request: JSONValue) throws {
        let document = try JSONValue(parsing: answer)
        switch kind {
        case .txt2img, .img2img:
            images = try Self.images(document["images"])
            // A1111's `info` is a JSON document in a string.
            let raw = try Self.field("info", of: document)
            info = raw.stringValue.map { text in (try? JSONValue(parsing: Data(text.utf8))) ?? .string(text) } ?? raw
            parameters = try Self.field("parameters", of: document)
            if let additions = request[TaskRecord.infoAdditionsKey]?.objectValue { add(additions) }
        case .extraSingleImage:
            guard let image = document["image"]?.stringValue else { throw WorkerAnswerError("the answer has no 'image'") }
            images = [image]
            info = ["html_info": .string(document["html_info"]?.stringValue ?? "")]
            parameters = request
            parameters["image"] = nil
        case .extraBatchImages:
            images = try Self.images(document["images"])
            info = ["html_info": .string(document["html_info"]?.stringValue ?? "")]
            parameters = request
            parameters["imageList"] = request["imageList"]?.arrayValue.map { list in
                .array(list.map { item in .object(["name": item["name"] ?? .null]) })
            }
        case .passthrough:
            // A passthrough call's answer is kept as the worker gave it (PassthroughResult), never read here.
            throw WorkerCallError.rejected(status: 200, detail: "a passthrough answer is not a generation's")
        }
    }

    static func field(_ name: String, of document: JSONValue) throws -> JSONValue {
        guard let value = document[name] else { throw WorkerAnswerError("the answer has no '\(name)'") }
        return value
    }

    /// A list of base64 images.
    static func images(_ value: JSONValue?) throws -> [String] {
        guard let list = value?.arrayValue else { throw WorkerAnswerError("the answer has no 'images' list") }
        return try list.map { item in
            guard let image = item.stringValue else { throw WorkerAnswerError("an image in 'images' is not a string") }
            return image
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

/// A worker's answer that is not what its task's kind answers.
struct WorkerAnswerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

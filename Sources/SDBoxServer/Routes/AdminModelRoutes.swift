import Appliance
import Foundation
import Logging
import Glibc
import HTTPTypes
import Hummingbird
import MultipartKit
import NIOCore
import NIOPosix
import SDBoxCore
import Scheduler

/// Model management: streamed uploads (`PUT /admin/models/{type}/{name}`, multipart `POST /admin/models`),
/// registration of files already on the box (`POST /admin/models/register`) and deletion
/// (`DELETE /admin/models/{type}/{name}`).
struct AdminModelRoutes {
    let services: Services

    func register(on router: Router<SDBoxRequestContext>) {
        let admin = router.group("/admin/models")
        admin.put(":type/:name") { request, context in
            let type = try Self.modelType(try context.parameters.require("type"))
            let name = try Self.modelName(context.parameters.require("name"))
            let overwrite = request.uri.queryParameters.get("overwrite") == "true"
            try checkSpace(for: request, type: type)
            let upload = try await services.models.beginUpload(type: type, name: name, overwrite: overwrite)
            let record = try await receive(request.body, as: upload)
            return try Response.json(CatalogRoutes.ModelView(record), status: .created)
        }
        admin.post("") { request, context in
            try await multipartUpload(request)
        }
        admin.post("register") { request, _ in
            let body = try await request.jsonObject(limit: 1 << 20)
            let type = try Self.modelType(body["type"]?.stringValue ?? ModelType.stableDiffusion.rawValue)
            guard let path = body["path"]?.stringValue, !path.isEmpty else {
                throw APIError(.badRequest, "invalid request", detail: "field 'path' must be the absolute path of a model file", extra: ["field": "path"])
            }
            let record = try await services.models.register(type: type, path: path, name: body["name"]?.stringValue)
            return try Response.json(CatalogRoutes.ModelView(record), status: .created)
        }
        admin.delete(":type/:name") { request, context in
            let type = try Self.modelType(try context.parameters.require("type"))
            let name = try Self.modelName(context.parameters.require("name"))
            try await services.deleteModel(type, named: name, force: request.uri.queryParameters.get("force") == "true") {
                try await services.models.delete(type: type, name: name)
            }
            return try Response.json(["status": "deleted", "type": type.rawValue, "name": name])
        }
    }

    /// A name from the path, percent-decoded (clients encode spaces and the like).
    static func modelName(_ raw: String) throws -> String {
        guard let name = raw.removingPercentEncoding else {
            throw APIError(.badRequest, "invalid model name", detail: "the name is not valid percent-encoded UTF-8", extra: ["field": "name"])
        }
        return name
    }

    static func modelType(_ text: String) throws -> ModelType {
        guard let type = ModelType(rawValue: text) ?? ModelType.allCases.first(where: { $0.folderName == text }) else {
            throw APIError(
                .badRequest, "unknown model type",
                detail: "'\(text)' is not one of \(ModelType.allCases.map(\.rawValue).joined(separator: ", "))", extra: ["field": "type"]
            )
        }
        return type
    }

    /// Refuses with 507 an upload whose announced size does not fit on the disk.
    func checkSpace(for request: Request, type: ModelType) throws {
        guard let length = request.headers[.contentLength].flatMap({ Int64($0) }) else { return }
        if length > services.configuration.models.maxUploadBytes {
            throw APIError(.contentTooLarge, "model too large", detail: "the file is over the limit of \(services.configuration.models.maxUploadBytes) bytes (models.maxUploadBytes)")
        }
        var info = statvfs()
        if statvfs(services.models.folder(of: type), &info) == 0, Int64(info.f_bavail) * Int64(info.f_frsize) < length {
            throw APIError(.insufficientStorage, "not enough disk space", detail: "the file needs \(length) bytes; the models folder has \(Int64(info.f_bavail) * Int64(info.f_frsize)) free")
        }
    }

    /// Streams a body into an upload and records the model; on any failure nothing is left behind.
    func receive<Body: AsyncSequence>(_ body: Body, as upload: ModelUpload) async throws -> ModelRecord where Body.Element == ByteBuffer {
        do {
            var writer = try await upload.open(limit: services.configuration.models.maxUploadBytes, threadPool: .singleton)
            do {
                for try await buffer in body { try await writer.append(buffer) }
            } catch {
                await writer.abort()
                throw error
            }
            let placed = try await writer.finish()
            return try await services.models.finishUpload(upload, placed: placed)
        } catch {
            await services.models.abandonUpload(upload)
            services.logger.warning("model upload failed; nothing kept", metadata: ["model": "\(upload.name)", "error": "\(error)"])
            throw error
        }
    }

    /// `POST /admin/models`, `multipart/form-data` as browsers send it: an optional `type` field (or
    /// `?type=`), then a `file` field whose file name is the model's name (or a `name` field before it).
    func multipartUpload(_ request: Request) async throws -> Response {
        guard let contentType = request.headers[.contentType], let boundary = Self.boundary(of: contentType) else {
            throw APIError(.badRequest, "invalid request", detail: "expected a multipart/form-data body with a boundary")
        }
        // The parser calls back synchronously; its events are queued and handled in order after each
        // chunk, so that file bytes can be awaited into the writer (which is what bounds memory).
        let parser = MultipartParser(boundary: boundary)
        var events: [PartEvent] = []
        parser.onHeader = { name, value in events.append(.header(name, value)) }
        parser.onBody = { buffer in events.append(.body(buffer)) }
        parser.onPartComplete = { events.append(.complete) }

        var fields: [String: String] = [:]
        var part = PartState()
        var record: ModelRecord?
        var upload: ModelUpload?
        var writer: ModelFileWriter?
        do {
            for try await buffer in request.body {
                do {
                    try parser.execute(buffer)
                } catch {
                    throw APIError(.badRequest, "invalid multipart body", detail: "the body is not valid multipart/form-data (\(error))")
                }
                let happened = events
                events = []
                for event in happened {
                    switch event {
                    case .header(let name, let value):
                        if name.lowercased() == "content-disposition" { part.disposition = value }
                    case .body(let chunk):
                        if part.isFile {
                            if writer == nil {
                                let name = fields["name"] ?? part.fileName ?? ""
                                let type = try Self.modelType(fields["type"] ?? request.uri.queryParameters.get("type") ?? ModelType.stableDiffusion.rawValue)
                                let overwrite = (fields["overwrite"] ?? request.uri.queryParameters.get("overwrite")) == "true"
                                let started = try await services.models.beginUpload(type: type, name: name, overwrite: overwrite)
                                upload = started
                                writer = try await started.open(limit: services.configuration.models.maxUploadBytes, threadPool: .singleton)
                            }
                            try await writer!.append(chunk)
                        } else {
                            part.value.append(String(buffer: chunk))
                            guard part.value.utf8.count <= 64 << 10 else {
                                throw APIError(.badRequest, "invalid request", detail: "form field '\(part.fieldName ?? "")' is over 64 KiB")
                            }
                        }
                    case .complete:
                        if part.isFile, let finished = upload, var done = writer {
                            writer = nil
                            upload = nil
                            let placed = try await done.finish()
                            record = try await services.models.finishUpload(finished, placed: placed)
                        } else if let field = part.fieldName {
                            fields[field] = part.value
                        }
                        part = PartState()
                    }
                }
            }
        } catch {
            await writer?.abort()
            if let upload { await services.models.abandonUpload(upload) }
            throw error
        }
        if let writer {
            await writer.abort()
            if let upload { await services.models.abandonUpload(upload) }
            throw APIError(.badRequest, "invalid multipart body", detail: "the body ended inside the file part")
        }
        guard let record else {
            throw APIError(.badRequest, "invalid request", detail: "the form has no 'file' field with a file name", extra: ["field": "file"])
        }
        return try Response.json(CatalogRoutes.ModelView(record), status: .created)
    }

    /// What the multipart parser reported, in order.
    enum PartEvent {
        case header(String, String)
        case body(ByteBuffer)
        case complete
    }

    /// The part of a multipart body being parsed.
    struct PartState {
        var disposition = ""
        /// The value of a plain (non-file) field.
        var value = ""

        var fieldName: String? { Self.parameter("name", in: disposition) }
        var fileName: String? { Self.parameter("filename", in: disposition) }
        var isFile: Bool { fieldName == "file" && fileName != nil }

        static func parameter(_ key: String, in header: String) -> String? {
            for item in header.split(separator: ";").dropFirst() {
                let pair = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if pair.count == 2, pair[0].lowercased() == key {
                    return pair[1].hasPrefix("\"") && pair[1].hasSuffix("\"") && pair[1].count >= 2 ? String(pair[1].dropFirst().dropLast()) : pair[1]
                }
            }
            return nil
        }
    }

    /// The boundary of a `multipart/form-data` content type.
    static func boundary(of contentType: String) -> String? {
        guard contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
        return PartState.parameter("boundary", in: contentType)
    }
}

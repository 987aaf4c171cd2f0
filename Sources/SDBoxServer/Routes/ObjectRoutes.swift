import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import ImageCodec
import Logging
import MultipartKit
import NIOCore
import NIOHTTP1
import ObjectStore
import SDBoxCore
import Scheduler
import Storage

/// Stored objects:
/// - `GET /objects/{key}?expires=<unix time>&sig=<hmac>` serves an object to whoever holds a valid signed
///   URL (expired or tampered URLs get 403), with its content type, an ETag (`If-None-Match` → 304) and
///   one byte range (`Range` → 206, a bad range → 416);
/// - `PUT /objects/inputs/<user>/<name>` (the raw image as body) and `POST /objects` (multipart form
///   data: the image in a part named `file`, an optional `key`) store an input image, answering
///   `{"key": ...}`, so that requests can name it instead of carrying base64.
struct ObjectRoutes {
    let services: Services
    let fileIO = FileIO()

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/objects/**") { request, context in
            try await serve(key: Self.key(context), request: request, context: context)
        }
        router.put("/objects/**") { request, context in
            let key = Self.key(context)
            let body = try await request.collectBody(limit: services.configuration.http.maxBodyBytes)
            return try await storeInput(Data(body.readableBytesView), key: key, user: context.user)
        }
        router.post("/objects") { request, context in
            let upload = try await MultipartUpload(request: request, limit: services.configuration.http.maxBodyBytes)
            return try await storeInput(upload.file, key: upload.key, user: context.user)
        }
    }

    static func key(_ context: SDBoxRequestContext) -> String {
        context.parameters.getCatchAll().joined(separator: "/").removingPercentEncoding ?? ""
    }

    // MARK: Serving

    func serve(key: String, request: Request, context: SDBoxRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        guard let expires = query.get("expires", as: Int64.self), let signature = query.get("sig") else {
            throw APIError(.forbidden, "signature required", detail: "object URLs need 'expires' and 'sig' query parameters")
        }
        guard services.signer.verify(objectKey: key, expires: expires, signature: signature) else {
            throw APIError(.forbidden, "invalid signature", detail: "the URL has expired or was altered")
        }
        let info: ObjectInfo
        do {
            info = try await services.objects.info(key)
        } catch ObjectStoreError.notFound {
            throw APIError(.notFound, "object not found", detail: "no object '\(key)'")
        } catch ObjectStoreError.invalidKey {
            throw APIError(.badRequest, "invalid object key", detail: "'\(key)' is not a key inside the object store")
        }
        var headers: HTTPFields = [
            .contentType: MediaType.getMediaType(forExtension: (key as NSString).pathExtension)?.description ?? "application/octet-stream",
            .eTag: info.etag,
            .acceptRanges: "bytes",
            .cacheControl: "private, max-age=\(max(0, expires - Int64(Date().timeIntervalSince1970)))",
        ]
        if let tags = request.headers[.ifNoneMatch], tags == "*" || tags.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == info.etag }) {
            return Response(status: .notModified, headers: headers)
        }
        var range = ByteRange(header: request.headers[.range], size: info.size)
        if let condition = request.headers[.ifRange], condition != info.etag { range = .whole }
        switch range {
        case .whole:
            return Response(status: .ok, headers: headers, body: try await fileIO.loadFile(path: info.path, context: context))
        case .part(let bytes):
            headers[.contentRange] = "bytes \(bytes.lowerBound)-\(bytes.upperBound)/\(info.size)"
            let body = try await fileIO.loadFile(path: info.path, range: bytes, context: context)
            return Response(status: .partialContent, headers: headers, body: body)
        case .unsatisfiable:
            var response = try Response.json(
                ["error": "range not satisfiable", "detail": "the object has \(info.size) bytes; asked: \(request.headers[.range] ?? "")"],
                status: .rangeNotSatisfiable
            )
            response.headers[.contentRange] = "bytes */\(info.size)"
            return response
        }
    }

    // MARK: Uploading

    /// Checks an uploaded image and its key, and stores it. Without a key it goes to
    /// `inputs/<user>/<random id>.<format's extension>`.
    func storeInput(_ data: Data, key requested: String?, user: String) async throws -> Response {
        let (header, _) = try await services.inputs.decode(data, field: "file")
        let key = requested ?? ObjectKey.input(user: user, name: "\(TaskID.make()).\(header.format.fileExtension)")
        let prefix = ObjectKey.inputs(of: user)
        guard key.hasPrefix(prefix), key.count > prefix.count else {
            throw APIError(.forbidden, "key not allowed", detail: "uploaded images go under \(prefix), not '\(key)'")
        }
        guard ImageFormat(fileExtension: (key as NSString).pathExtension) == header.format else {
            throw APIError(
                .badRequest, "invalid object key",
                detail: "the image is a \(header.format.rawValue.uppercased()): its key must end in .\(header.format.fileExtension), not '\(key)'"
            )
        }
        do {
            try await services.objects.put(data, key: key)
        } catch ObjectStoreError.invalidKey {
            throw APIError(.badRequest, "invalid object key", detail: "'\(key)' is not a key inside the object store")
        }
        return try Response.json(["key": key], status: .created)
    }
}

/// The parts of a `multipart/form-data` upload: the image in the part named `file`, and an optional
/// `key` part naming where to store it.
struct MultipartUpload {
    let file: Data
    let key: String?

    init(request: Request, limit: Int) async throws {
        let contentType = request.headers[.contentType] ?? ""
        guard let boundary = AdminModelRoutes.boundary(of: contentType) else {
            throw APIError(.unsupportedMediaType, "multipart/form-data required", detail: "send the image as a part named 'file', or PUT it to /objects/{key}")
        }
        let body = try await request.collectBody(limit: limit)
        var parts: [MultipartPart] = []
        var headers = HTTPHeaders()
        var content = ByteBuffer()
        let parser = MultipartParser(boundary: boundary)
        parser.onHeader = { name, value in headers.replaceOrAdd(name: name, value: value) }
        parser.onBody = { chunk in content.writeBuffer(&chunk) }
        parser.onPartComplete = {
            parts.append(MultipartPart(headers: headers, body: content))
            headers = HTTPHeaders()
            content = ByteBuffer()
        }
        do {
            try parser.execute(body)
        } catch {
            throw APIError(.badRequest, "invalid multipart body", detail: "the body is not multipart/form-data with boundary '\(boundary)'")
        }
        guard let file = parts.firstPart(named: "file") else {
            throw APIError(.badRequest, "invalid request", detail: "the multipart body has no part named 'file'", extra: ["field": "file"])
        }
        self.file = Data(file.body.readableBytesView)
        self.key = parts.firstPart(named: "key").map { String(buffer: $0.body) }.flatMap { $0.isEmpty ? nil : $0 }
    }
}

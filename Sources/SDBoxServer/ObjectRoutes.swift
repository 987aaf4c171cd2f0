import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ObjectStore
import SDBoxCore
import Scheduler
import Storage

/// `GET /objects/{key}?expires=<unix time>&sig=<hmac>`: serves a stored object to whoever holds a
/// valid signed URL; expired or tampered URLs get 403.
struct ObjectRoutes {
    let services: Services
    let fileIO = FileIO()

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/objects/**") { request, context in
            let key = context.parameters.getCatchAll().joined(separator: "/").removingPercentEncoding ?? ""
            let query = request.uri.queryParameters
            guard let expires = query.get("expires", as: Int64.self), let signature = query.get("sig") else {
                throw APIError(.forbidden, "signature required", detail: "object URLs need 'expires' and 'sig' query parameters")
            }
            guard services.signer.verify(objectKey: key, expires: expires, signature: signature) else {
                throw APIError(.forbidden, "invalid signature", detail: "the URL has expired or was altered")
            }
            let path: String
            do {
                path = try services.objects.path(for: key)
            } catch {
                throw APIError(.badRequest, "invalid object key", detail: "\(error)")
            }
            guard FileManager.default.fileExists(atPath: path) else {
                throw APIError(.notFound, "object not found", detail: "no object '\(key)'")
            }
            let body = try await fileIO.loadFile(path: path, context: context)
            let type = MediaType.getMediaType(forExtension: (key as NSString).pathExtension)?.description ?? "application/octet-stream"
            return Response(
                status: .ok,
                headers: [.contentType: type, .cacheControl: "private, max-age=\(max(0, expires - Int64(Date().timeIntervalSince1970)))"],
                body: body
            )
        }
    }
}

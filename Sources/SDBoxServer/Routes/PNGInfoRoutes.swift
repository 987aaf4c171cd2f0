import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import ImageCodec
import SDBoxCore

/// `POST /sdapi/v1/png-info` `{"image": <base64 PNG or data: URI>}`, answered by sdbox as A1111 does:
/// `info` (the `parameters` text chunk, the infotext), `items` (the other text chunks) and `parameters`
/// (the infotext's fields, see ``Infotext/parse(_:)``). The image is decoded and read on ``CPUWork``'s
/// thread; an infotext over ``Infotext/maxBytes`` is refused with 422, as A1111's PIL refuses it.
struct PNGInfoRoutes {
    let services: Services

    func register(on router: Router<SDBoxRequestContext>) {
        router.post("/sdapi/v1/png-info") { request, _ in
            let body = try await request.jsonObject(limit: services.configuration.http.maxBodyBytes)
            guard let text = body["image"]?.stringValue, !text.isEmpty else {
                throw APIError(.badRequest, "invalid request", detail: "field 'image' must be a base64 PNG", extra: ["field": "image"])
            }
            let answer = try await CPUWork.run { () throws(APIError) -> JSONValue in
                let payload = text.hasPrefix("data:") ? String(text.drop { $0 != "," }.dropFirst()) : text
                guard let data = Data(base64Encoded: payload, options: .ignoreUnknownCharacters) else {
                    throw APIError(.badRequest, "invalid request", detail: "field 'image' is not valid base64", extra: ["field": "image"])
                }
                var items = PNGTextChunks.read(from: data)
                let info = items.removeValue(forKey: "parameters") ?? ""
                guard items.values.allSatisfy({ $0.utf8.count <= Infotext.maxBytes }), info.utf8.count <= Infotext.maxBytes else {
                    throw APIError(
                        .unprocessableContent, "text chunk too large",
                        detail: "a text chunk of the PNG is over \(Infotext.maxBytes) bytes", extra: ["field": "image"]
                    )
                }
                return [
                    "info": .string(info),
                    "items": .object(items.mapValues { .string($0) }),
                    "parameters": .object(info.isEmpty ? [:] : Infotext.parse(info)),
                ]
            }
            return try Response.json(answer)
        }
    }
}

import Foundation
import Hummingbird
import ImageCodec
import SDBoxCore

/// Endpoints of the reference worker beyond what sdbox itself calls: a small ControlNet-shaped
/// extension API and A1111's endpoints that sdbox forwards (`cmd-flags`, `face-restorers`,
/// `realesrgan-models`, `hypernetworks`, `extensions`, `script-info`, `interrogate`) in A1111's shapes,
/// so that passthrough works and is tested without a real extension. `POST /controlnet/detect` runs one
/// preprocessor, `invert` (or `none`), on PNG images; `interrogate` describes an image by its size.
enum ReferenceExtensionRoutes {
    static func register(on router: Router<ReferenceWorkerServer.Context>, engine: ReferenceEngine, configuration: ReferenceWorkerConfiguration) {
        router.get("/controlnet/version") { _, _ in ReferenceWorkerServer.json(["version": 2]) }
        router.get("/controlnet/model_list") { _, _ in ReferenceWorkerServer.json(["model_list": []]) }
        router.get("/controlnet/module_list") { _, _ in ReferenceWorkerServer.json(["module_list": ["none", "invert"]]) }
        router.post("/controlnet/detect") { request, context in
            let body = try await request.body.collect(upTo: context.maxUploadSize)
            guard let fields = (try? JSONValue(parsing: body.readableBytesView))?.objectValue,
                let inputs = fields["controlnet_input_images"]?.arrayValue?.compactMap(\.stringValue), !inputs.isEmpty
            else {
                return ReferenceWorkerServer.json(
                    ["error": "HTTPException", "detail": "controlnet_input_images must hold at least one image"], status: .unprocessableContent
                )
            }
            let module = fields["controlnet_module"]?.stringValue ?? "none"
            guard ["none", "invert"].contains(module) else {
                return ReferenceWorkerServer.json(["error": "HTTPException", "detail": .string("Module '\(module)' not found")], status: .unprocessableContent)
            }
            var images: [JSONValue] = []
            do {
                for input in inputs {
                    var image = try ReferenceRequest.decodeImage(input, field: "controlnet_input_images")
                    if module == "invert" { image.pixels = image.pixels.map { 255 - $0 } }
                    images.append(.string(try PNGCodec.encode(image).base64EncodedString()))
                }
            } catch let error as GenerationInputError {
                return ReferenceWorkerServer.json(["error": "HTTPException", "detail": .string(error.description)], status: .unprocessableContent)
            }
            return ReferenceWorkerServer.json(["images": .array(images), "info": "Success"])
        }
        router.get("/sdapi/v1/face-restorers") { _, _ in
            ReferenceWorkerServer.json(try JSONValue(encoding: [A1111.FaceRestorer(name: "CodeFormer", cmd_dir: nil), A1111.FaceRestorer(name: "GFPGAN", cmd_dir: nil)]))
        }
        router.get("/sdapi/v1/realesrgan-models") { _, _ in ReferenceWorkerServer.json(try JSONValue(encoding: [A1111.RealESRGANModel]())) }
        router.get("/sdapi/v1/hypernetworks") { _, _ in ReferenceWorkerServer.json(try JSONValue(encoding: [A1111.Hypernetwork]())) }
        router.get("/sdapi/v1/extensions") { _, _ in ReferenceWorkerServer.json(try JSONValue(encoding: [A1111.Extension]())) }
        router.get("/sdapi/v1/script-info") { _, _ in ReferenceWorkerServer.json(try JSONValue(encoding: [A1111.ScriptInfo]())) }
        router.post("/sdapi/v1/interrogate") { request, context in
            let body = try await request.body.collect(upTo: context.maxUploadSize)
            guard let image = (try? JSONValue(parsing: body.readableBytesView))?["image"]?.stringValue, !image.isEmpty else {
                return ReferenceWorkerServer.json(["error": "HTTPException", "detail": "Image not found"], status: .notFound)
            }
            do {
                let decoded = try ReferenceRequest.decodeImage(image, field: "image")
                return ReferenceWorkerServer.json(try JSONValue(encoding: A1111.InterrogateResponse(caption: "a test image, \(decoded.width)x\(decoded.height)")))
            } catch let error as GenerationInputError {
                return ReferenceWorkerServer.json(["error": "HTTPException", "detail": .string(error.description)], status: .unprocessableContent)
            }
        }
        router.get("/sdapi/v1/cmd-flags") { _, _ in
            ReferenceWorkerServer.json([
                "api": true, "nowebui": true, "port": .integer(Int64(configuration.port)), "ckpt": .string(engine.checkpoint.path),
            ])
        }
    }
}

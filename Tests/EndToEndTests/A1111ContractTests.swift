import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// A1111's contract: every `/sdapi/v1` endpoint sdbox answers or forwards, its answer checked against
/// A1111's pydantic response models (`modules/api/models.py`, v1.10): every field there, with its JSON
/// type; `Optional[...]` fields present and maybe null, the others never null.
@Suite(.serialized, .timeLimit(.minutes(2))) struct A1111ContractTests {
    // A1111's response models, written out as shapes.
    static let progress = JSONShape.record([
        "progress": .required(.number), "eta_relative": .required(.number), "state": .required(.object),
        "current_image": .nullable(.string), "textinfo": .nullable(.string),
    ])
    static let generation = JSONShape.record(["images": .nullable(.array(.string)), "parameters": .required(.object), "info": .required(.string)])
    static let sampler = JSONShape.record(["name": .required(.string), "aliases": .required(.array(.string)), "options": .required(.map(.string))])
    static let scheduler = JSONShape.record([
        "name": .required(.string), "label": .required(.string), "aliases": .nullable(.array(.string)), "default_rho": .nullable(.number),
        "need_inner_model": .nullable(.boolean),
    ])
    static let upscaler = JSONShape.record([
        "name": .required(.string), "model_name": .nullable(.string), "model_path": .nullable(.string), "model_url": .nullable(.string),
        "scale": .nullable(.number),
    ])
    static let sdModel = JSONShape.record([
        "title": .required(.string), "model_name": .required(.string), "hash": .nullable(.string), "sha256": .nullable(.string),
        "filename": .required(.string), "config": .nullable(.string),
    ])
    static let embedding = JSONShape.record([
        "step": .nullable(.integer), "sd_checkpoint": .nullable(.string), "sd_checkpoint_name": .nullable(.string), "shape": .required(.integer),
        "vectors": .required(.integer),
    ])
    static let shapes: [(String, JSONShape)] = [
        ("progress", progress),
        ("samplers", .array(sampler)),
        ("schedulers", .array(scheduler)),
        ("upscalers", .array(upscaler)),
        ("latent-upscale-modes", .array(.record(["name": .required(.string)]))),
        ("sd-models", .array(sdModel)),
        ("sd-vae", .array(.record(["model_name": .required(.string), "filename": .required(.string)]))),
        ("hypernetworks", .array(.record(["name": .required(.string), "path": .nullable(.string)]))),
        ("face-restorers", .array(.record(["name": .required(.string), "cmd_dir": .nullable(.string)]))),
        ("realesrgan-models", .array(.record(["name": .required(.string), "path": .nullable(.string), "scale": .nullable(.integer)]))),
        ("prompt-styles", .array(.record(["name": .required(.string), "prompt": .nullable(.string), "negative_prompt": .nullable(.string)]))),
        ("embeddings", .record(["loaded": .required(.map(embedding)), "skipped": .required(.map(embedding))])),
        ("memory", .record(["ram": .required(.object), "cuda": .required(.object)])),
        ("scripts", .record(["txt2img": .nullable(.array(.any)), "img2img": .nullable(.array(.any))])),
        ("script-info", .array(.record([
            "name": .nullable(.string), "is_alwayson": .nullable(.boolean), "is_img2img": .nullable(.boolean), "args": .required(.array(.object)),
        ]))),
        ("extensions", .array(.record([
            "name": .required(.string), "remote": .required(.string), "branch": .required(.string), "commit_hash": .required(.string),
            "version": .required(.string), "commit_date": .required(.string), "enabled": .required(.boolean),
        ]))),
        ("loras", .array(.record(["name": .required(.string), "alias": .required(.string), "path": .required(.string), "metadata": .required(.object)]))),
        ("options", .object),
        ("cmd-flags", .object),
    ]

    func expectShape(_ value: JSONValue, _ shape: JSONShape, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let problems = shape.problems(in: value)
        #expect(problems.isEmpty, "\(what): \(problems.joined(separator: "; ")) in \(String(describing: value).prefix(600))", sourceLocation: sourceLocation)
    }

    @Test func everyEndpointAnswersInA1111sModels() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        // Something in every list: a VAE, a LoRA, an embedding (4 vectors of 768), an upscaler, a style.
        let embeddingFile = ModelManagementTests.safetensors(tensor: "emb_params", shape: [4, 768])
        for (type, name, file) in [
            ("sdVae", "vae-ft-mse.safetensors", ModelManagementTests.safetensors(bytes: 4096)), ("lora", "watercolor.safetensors", ModelManagementTests.safetensors(bytes: 4096)),
            ("embedding", "easynegative.safetensors", embeddingFile), ("upscaler", "4x-UltraSharp.safetensors", ModelManagementTests.safetensors(bytes: 4096)),
        ] {
            #expect(try await server.request(.PUT, "/admin/models/\(type)/\(name)", body: file).0 == 201)
        }
        #expect(try await server.json(.PUT, "/admin/styles", [["name": "Cinematic", "prompt": "cinematic still of {prompt}"]]).0 == 200)

        for (endpoint, shape) in Self.shapes {
            let (status, answer) = try await server.json(.GET, "/sdapi/v1/\(endpoint)")
            #expect(status == 200, "GET \(endpoint): \(status) \(answer)")
            expectShape(answer, shape, "GET /sdapi/v1/\(endpoint)")
            if case .array = shape, !["hypernetworks", "realesrgan-models", "script-info", "extensions"].contains(endpoint) {
                #expect(answer.arrayValue?.isEmpty == false, "GET \(endpoint) lists something to check")
            }
        }
        #expect(try await server.json(.GET, "/sdapi/v1/embeddings").1["loaded"]?["easynegative"] == [
            "step": nil, "sd_checkpoint": nil, "sd_checkpoint_name": nil, "shape": 768, "vectors": 4,
        ])

        let image = try solidPNGBase64(width: 64, height: 64, rgb: (10, 120, 200))
        let posts: [(String, JSONValue, JSONShape)] = [
            ("txt2img", ["prompt": "fox", "steps": 2, "width": 64, "height": 64], Self.generation),
            ("img2img", ["prompt": "fox", "steps": 2, "width": 64, "height": 64, "init_images": [.string(image)]], Self.generation),
            ("extra-single-image", ["image": .string(image), "upscaling_resize": 2], .record(["html_info": .required(.string), "image": .nullable(.string)])),
            (
                "extra-batch-images", ["imageList": [["data": .string(image), "name": "a.png"]], "upscaling_resize": 2],
                .record(["html_info": .required(.string), "images": .required(.array(.string))])
            ),
            ("png-info", ["image": .string(image)], .record(["info": .required(.string), "items": .required(.object), "parameters": .required(.object)])),
            ("interrogate", ["image": .string(image), "model": "clip"], .record(["caption": .nullable(.string)])),
            ("interrupt", [:], .record([:])),
            ("skip", [:], .record([:])),
            ("reload-checkpoint", [:], .record([:])),
            ("unload-checkpoint", [:], .record([:])),
        ]
        for (endpoint, body, shape) in posts {
            let (status, answer) = try await server.json(.POST, "/sdapi/v1/\(endpoint)", body)
            #expect(status == 200, "POST \(endpoint): \(status) \(answer)")
            expectShape(answer, shape, "POST /sdapi/v1/\(endpoint)")
            if case .record(let keys) = shape, keys.isEmpty { #expect(answer == [:], "POST \(endpoint) answers {}") }
        }
        for endpoint in ["options", "refresh-checkpoints", "refresh-vae", "refresh-loras", "refresh-embeddings"] {
            let (status, answer) = try await server.json(.POST, "/sdapi/v1/\(endpoint)", [:])
            #expect(status == 200 && answer == .null, "POST \(endpoint) answers null, as A1111")
        }
        for control in ["server-kill", "server-restart", "server-stop"] {
            #expect(try await server.json(.POST, "/sdapi/v1/\(control)").0 == 403, "\(control) refused")
        }
    }
}

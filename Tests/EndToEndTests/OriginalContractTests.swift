import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// The original serverless edition's contract: every one of its operations, with request bodies as its
/// own request scripts send them (`script/request/*.py`: `sd_vae: "None"`, a LoRA tag the box lacks, a
/// ControlNet unit, `data:` URIs, a stored image key, the `token` header, `extraArgs` as one string and a
/// `vpcConfig`), each answer checked against the original's response schemas.
@Suite(.serialized, .timeLimit(.minutes(3))) struct OriginalContractTests {
    // The response schemas of the original's API description (api/api.yaml of
    // devsapp/serverless-stable-diffusion-api), written out as shapes.
    static let model = JSONShape.record([
        "type": .required(.string), "name": .required(.string), "ossPath": .required(.string), "etag": .required(.string),
        "status": .required(.string), "registeredTime": .optional(.string), "lastModificationTime": .optional(.string),
    ])
    static let submitTask = JSONShape.record([
        "taskId": .required(.string), "status": .required(.string), "ossUrl": .optional(.array(.string)), "message": .optional(.string),
    ])
    static let taskProgress = JSONShape.record([
        "taskId": .required(.string), "progress": .required(.number), "etaRelative": .required(.number), "state": .optional(.object),
        "currentImage": .required(.string), "message": .optional(.string),
    ])
    static let taskResult = JSONShape.record([
        "taskId": .required(.string), "status": .required(.string), "images": .optional(.array(.string)), "ossUrl": .optional(.array(.string)),
        "parameters": .optional(.object), "info": .optional(.object), "message": .optional(.string),
    ])
    static let responseMessage = JSONShape.record(["message": .required(.string)])
    static let userLogin = JSONShape.record(["token": .required(.string), "userName": .required(.string), "message": .optional(.string)])
    static let batchUpdate = JSONShape.record(["status": .optional(.string), "failFuncList": .optional(.array(.string)), "errMsg": .optional(.string)])
    static let listFunctions = JSONShape.record(["status": .optional(.string), "functions": .optional(.array(.object)), "errMsg": .optional(.string)])
    static let deleteFunctions = JSONShape.record(["status": .optional(.string), "fails": .optional(.array(.object))])
    static let error = JSONShape.record(["code": .required(.integer), "message": .required(.string)])

    /// The checkpoint the original's scripts name.
    static let checkpoint = "xxmix9realistic_v40.safetensors"

    func expectShape(_ value: JSONValue, _ shape: JSONShape, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let problems = shape.problems(in: value)
        #expect(problems.isEmpty, "\(what): \(problems.joined(separator: "; ")) in \(String(describing: value).prefix(600))", sourceLocation: sourceLocation)
    }

    @Test func everyOperationAnswersInTheOriginalsShapes() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nauth: {required: true}", models: [Self.checkpoint: DemoCheckpoint.contents()])
        defer { server.destroy() }
        let operator_ = try await server.addKey(user: "operator", role: "admin")
        for (name, role) in [("admin", "admin"), ("default", "user")] {
            #expect(try await server.json(.POST, "/admin/users", ["userName": .string(name), "password": "a long password", "role": .string(role)], headers: bearer(operator_)).0 == 201)
        }

        // POST /login, as login.py sends it (capitalised keys, no Content-Type).
        func login(_ name: String) async throws -> String {
            let answer = try await server.response(.POST, "/login", body: Data(#"{"UserName": "\#(name)", "Password": "a long password"}"#.utf8))
            let body = try JSONValue(parsing: answer.body)
            #expect(answer.status == 200)
            expectShape(body, Self.userLogin, "POST /login")
            return try #require(body["token"]?.stringValue)
        }
        let user = [("token", try await login("default"))]
        let admin = [("token", try await login("admin"))]
        let sync = [("Request-Type", "sync"), ("content-type", "application/json")]

        // POST /options.
        let (optionsStatus, options) = try await server.json(.POST, "/options", ["data": ["sd_model_checkpoint": .string(Self.checkpoint)]], headers: user)
        #expect(optionsStatus == 200)
        expectShape(options, Self.responseMessage, "POST /options")

        // The model registry: POST, GET (all and one), PUT.
        let stored = server.dataDirectory + "/objects/models/Lora"
        try FileManager.default.createDirectory(atPath: stored, withIntermediateDirectories: true)
        try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: stored + "/blingdbox_v1_mix.safetensors"))
        let register: JSONValue = ["type": "lora", "name": "blingdbox_v1_mix.safetensors", "ossPath": "models/Lora/blingdbox_v1_mix.safetensors"]
        let (registered, registerAnswer) = try await server.json(.POST, "/models", register, headers: admin)
        #expect(registered == 200)
        expectShape(registerAnswer, Self.responseMessage, "POST /models")
        let (listed, models) = try await server.json(.GET, "/models", headers: user)
        #expect(listed == 200)
        expectShape(models, .array(Self.model), "GET /models")
        let (one, lora) = try await server.json(.GET, "/models/blingdbox_v1_mix.safetensors", headers: user)
        #expect(one == 200)
        expectShape(lora, Self.model, "GET /models/{name}")
        let (put, putAnswer) = try await server.json(.PUT, "/models/blingdbox_v1_mix.safetensors", register, headers: admin)
        #expect(put == 200)
        expectShape(putAnswer, Self.responseMessage, "PUT /models/{name}")

        // POST /txt2img as txt2img.py sends it: sd_vae "None", a LoRA tag (one the box lacks), a ControlNet unit.
        let image = try solidPNGBase64(width: 64, height: 64, rgb: (200, 40, 40))
        let controlnet: JSONValue = [
            "image": .string(image), "enabled": true, "module": "canny", "model": "control_v11p_sd15_canny", "weight": 1,
            "resize_mode": "Crop and Resize", "low_vram": false, "processor_res": 512, "threshold_a": 100, "threshold_b": 200,
            "guidance_start": 0, "guidance_end": 1, "pixel_perfect": true, "control_mode": "Balanced", "input_mode": "simple",
            "batch_images": "", "output_dir": "", "loopback": false,
        ]
        let txt2img: JSONValue = [
            "stable_diffusion_model": .string(Self.checkpoint), "sd_vae": "None",
            "prompt": "masterpiece, best quality, beach, <lora:ChinaDollLikeness:1>", "negative_prompt": "loli,nsfw,logo,text",
            "batch_size": 1, "steps": 4, "cfg_scale": 7, "width": 64, "height": 64, "alwayson_scripts": ["controlnet": ["args": [controlnet]]],
        ]
        let generated = try await server.response(.POST, "/txt2img", body: try txt2img.encoded(), headers: sync + user)
        let submitted = try JSONValue(parsing: generated.body)
        #expect(generated.status == 200 && submitted["status"] == "succeeded", "\(submitted)")
        expectShape(submitted, Self.submitTask, "POST /txt2img")
        let taskID = try #require(submitted["taskId"]?.stringValue)
        #expect(generated.headers.first(name: "taskId") == taskID)

        // GET /tasks/{id}/progress and /result.
        let (_, progress) = try await server.json(.GET, "/tasks/\(taskID)/progress", headers: user)
        expectShape(progress, Self.taskProgress, "GET /tasks/{id}/progress")
        let (_, result) = try await server.json(.GET, "/tasks/\(taskID)/result", headers: user)
        expectShape(result, Self.taskResult, "GET /tasks/{id}/result")
        #expect(["waiting", "running", "succeeded", "failed", "cancelled"].contains(result["status"]?.stringValue ?? ""))
        #expect(result["info"]?["lorasNotFound"] == ["ChinaDollLikeness"])

        // POST /img2img as ima2img.py sends it: data: URIs for init_images, mask and the ControlNet image.
        let dataURI = JSONValue.string("data:image/png;base64," + image)
        var unit = controlnet
        unit["image"] = dataURI
        let img2img: JSONValue = [
            "stable_diffusion_model": .string(Self.checkpoint), "sd_vae": "None", "prompt": "product place on table", "width": 64, "height": 64,
            "seed": 112233, "steps": 4, "cfg_scale": 7, "sampler_name": "Euler a", "batch_size": 1, "init_images": [dataURI], "mask": dataURI,
            "mask_blur": 4, "inpainting_mask_invert": 1, "denoising_strength": 1, "inpainting_fill": 2, "inpaint_full_res": false,
            "inpaint_full_res_padding": 32, "resize_mode": 0, "override_settings": [:], "alwayson_scripts": ["controlnet": ["args": [unit]]],
        ]
        let (img2imgStatus, img2imgAnswer) = try await server.json(.POST, "/img2img", img2img, headers: sync + user)
        #expect(img2imgStatus == 200 && img2imgAnswer["status"] == "succeeded", "\(img2imgAnswer)")
        expectShape(img2imgAnswer, Self.submitTask, "POST /img2img")

        // POST /extra_images as extra_image.py sends it: a stored image's key, no model.
        let extras: JSONValue = [
            "resize_mode": 0, "show_extras_results": true, "gfpgan_visibility": 0, "codeformer_visibility": 0, "codeformer_weight": 0,
            "upscaling_resize": 2, "upscaler_1": "Lanczos", "upscaler_2": "None", "extras_upscaler_2_visibility": 0, "upscale_first": false,
            "image": .string("images/default/\(taskID)_1.png"),
        ]
        let (extrasStatus, extrasAnswer) = try await server.json(.POST, "/extra_images", extras, headers: sync + user)
        #expect(extrasStatus == 200 && extrasAnswer["status"] == "succeeded", "\(extrasAnswer)")
        expectShape(extrasAnswer, Self.submitTask, "POST /extra_images")

        // POST /tasks/{id}/cancellation of a waiting task.
        let (_, queued) = try await server.json(.POST, "/txt2img", txt2img, headers: [("Request-Type", "async")] + user)
        expectShape(queued, Self.submitTask, "POST /txt2img async")
        let (cancelled, cancellation) = try await server.json(.POST, "/tasks/\(queued["taskId"]?.stringValue ?? "")/cancellation", headers: user)
        #expect(cancelled == 200)
        expectShape(cancellation, Self.responseMessage, "POST /tasks/{id}/cancellation")

        // The pools: batch_update_sd_resource as resource.py sends it, list, restart, delete.
        let resource = try await server.response(.POST, "/batch_update_sd_resource", body: Data("""
            {"models": ["\(Self.checkpoint)"], "extraArgs": "--api --nowebui", "vpcConfig": {"securityGroupId": "xxx", "vSwitchIds": ["xxx"], "vpcId": "xxx"}}
            """.utf8), headers: sync + admin)
        let resourceAnswer = try JSONValue(parsing: resource.body)
        #expect(resource.status == 200, "\(resourceAnswer)")
        expectShape(resourceAnswer, Self.batchUpdate, "POST /batch_update_sd_resource")
        let (_, functions) = try await server.json(.GET, "/list/sdapi/functions", headers: admin)
        expectShape(functions, Self.listFunctions, "GET /list/sdapi/functions")
        let (restarted, restartAnswer) = try await server.json(.POST, "/restart", headers: admin)
        #expect(restarted == 200)
        expectShape(restartAnswer, Self.responseMessage, "POST /restart")
        // The pool's new workers start with the original's arguments and serve.
        let (again, afterRestart) = try await server.json(.POST, "/txt2img", txt2img, headers: sync + user)
        #expect(again == 200 && afterRestart["status"] == "succeeded", "\(afterRestart)")
        let functionName = try #require(functions["functions"]?.arrayValue?.first?["functionName"]?.stringValue)
        let (deleted, deleteAnswer) = try await server.json(.POST, "/del/sd/functions", ["functions": [.string(functionName)]], headers: admin)
        #expect(deleted == 200)
        expectShape(deleteAnswer, Self.deleteFunctions, "POST /del/sd/functions")

        // DELETE /models/{name}.
        let (removed, removeAnswer) = try await server.json(.DELETE, "/models/blingdbox_v1_mix.safetensors", headers: admin)
        #expect(removed == 200)
        expectShape(removeAnswer, Self.responseMessage, "DELETE /models/{name}")

        // Errors: the original's {code, message}.
        for (method, path) in [(HTTPMethod.GET, "/tasks/nosuchtask/result"), (.GET, "/models/nope.safetensors"), (.POST, "/models")] {
            let (status, refusal) = try await server.json(method, path, method == .POST ? [:] : nil, headers: admin)
            #expect(status >= 400 && refusal["code"]?.integerValue == Int64(status), "\(method) \(path)")
            expectShape(refusal, Self.error, "\(method) \(path)")
        }
    }
}

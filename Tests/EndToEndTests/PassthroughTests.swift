import Foundation
import ImageCodec
import NIOHTTP1
import SDBoxCore
import Testing

/// A 16x16 PNG of one colour, base64.
func swatch(_ rgb: (UInt8, UInt8, UInt8)) throws -> String {
    try solidPNGBase64(width: 16, height: 16, rgb: rgb)
}

/// The colour of the first pixel of a base64 PNG.
func firstPixel(_ base64: String) throws -> [UInt8] {
    let image = try PNGCodec.decode(try #require(Data(base64Encoded: base64)))
    return Array(image.pixels.prefix(3))
}

@Suite(.serialized, .timeLimit(.minutes(2))) struct PassthroughTests {
    @Test func endpointsSdboxDoesNotKnowGoToTheModelsWorker() async throws {
        let server = try await ServerProcess(
            config: fastWorkers + "\nmaxBodyBytes: 4096\n", models: ["first.safetensors": DemoCheckpoint.contents(), "second.safetensors": DemoCheckpoint.contents()]
        )
        defer { server.destroy() }
        // An A1111 endpoint sdbox does not answer itself: the worker's answer as it gave it.
        let (status, flags) = try await server.json(.GET, "/sdapi/v1/cmd-flags")
        #expect(status == 200, "\(flags)")
        #expect(flags["ckpt"]?.stringValue?.hasSuffix("/first.safetensors") == true)
        let (_, second) = try await server.json(.GET, "/sdapi/v1/cmd-flags", headers: [("X-SD-Model", "second")])
        #expect(second["ckpt"]?.stringValue?.hasSuffix("/second.safetensors") == true)
        // An extension's API, under a configured prefix.
        #expect(try await server.json(.GET, "/controlnet/version").1 == ["version": 2])
        #expect(try await server.json(.GET, "/controlnet/model_list").1 == ["model_list": []])
        let (detected, answer) = try await server.json(.POST, "/controlnet/detect", [
            "controlnet_module": "invert", "controlnet_input_images": [.string(try swatch((10, 20, 30)))], "stable_diffusion_model": "second",
        ])
        #expect(detected == 200, "\(answer)")
        #expect(try firstPixel(try #require(answer["images"]?[0]?.stringValue)) == [245, 235, 225])
        #expect(answer["info"] == "Success")
        // The worker's errors come back as it sent them.
        let (refused, error) = try await server.json(.POST, "/controlnet/detect", ["controlnet_module": "canny", "controlnet_input_images": [.string(try swatch((0, 0, 0)))]])
        #expect(refused == 422)
        #expect(error["detail"] == "Module 'canny' not found")

        // A body that is not JSON is streamed to the worker, whatever its size; a JSON one is read, within maxBodyBytes.
        let large = Data(repeating: 7, count: 8192)
        let streamed = try await server.response(.POST, "/controlnet/detect", body: large, headers: [("Content-Type", "application/octet-stream")])
        #expect(streamed.status == 422)
        #expect(try JSONValue(parsing: streamed.body)["detail"] == "controlnet_input_images must hold at least one image")
        let tooLarge = try await server.response(.POST, "/controlnet/detect", body: Data("{\"x\":\"\(String(repeating: "a", count: 8192))\"}".utf8))
        #expect(tooLarge.status == 413)

        #expect(try await server.json(.GET, "/sdapi/v1/cmd-flags", headers: [("X-SD-Model", "missing")]).0 == 404)
        let (kill, killAnswer) = try await server.json(.POST, "/sdapi/v1/server-kill")
        #expect(kill == 403, "\(killAnswer)")
        // Any other path goes to the worker, as the original forwards it: the reference worker has no
        // ADetailer, and its 404 comes back; A1111's forwarded lists answer in A1111's shapes.
        let adetailer = try await server.response(.GET, "/adetailer/v1/version")
        let workers404 = try JSONValue(parsing: adetailer.body)
        #expect(adetailer.status == 404 && workers404 == ["detail": "Not Found"], "the worker's own 404")
        #expect(try await server.json(.GET, "/sdapi/v1/face-restorers").1.arrayValue?.first?["name"] == "CodeFormer")
        // The worker's internals and gradio's paths are refused, whatever the spelling.
        for inner in ["/internal/ping", "/internal/sysinfo", "/x/../internal/ping", "/%69nternal/ping", "/file=/etc/passwd", "/queue/join"] {
            #expect(try await server.response(.GET, inner).status == 403, "\(inner)")
        }
    }

    @Test func postCallsWaitForTheGenerationOnTheirWorkerAndGetCallsDoNot() async throws {
        let server = try await ServerProcess(config: pacedWorkers)
        defer { server.destroy() }
        let (_, submitted) = try await server.json(.POST, "/txt2img", ["prompt": "long", "steps": 60, "width": 512, "height": 512], headers: [("Request-Type", "async")])
        let id = try #require(submitted["taskId"]?.stringValue)
        while try await server.json(.GET, "/tasks/\(id)").1["status"] != "running" { try await Task.sleep(for: .milliseconds(20)) }
        // A GET is answered by the busy worker at once...
        #expect(try await server.json(.GET, "/controlnet/model_list").0 == 200)
        #expect(try await server.json(.GET, "/tasks/\(id)").1["status"] == "running")
        // ...a POST waits until the worker is free.
        let (status, _) = try await server.json(.POST, "/controlnet/detect", ["controlnet_input_images": [.string(try swatch((1, 2, 3)))]])
        #expect(status == 200)
        // When it is answered, the generation is off the worker (the worker is given back as soon as it
        // answers; the task's record then catches up).
        let (_, workers) = try await server.json(.GET, "/workers")
        #expect(workers["workers"]?.arrayValue?.contains { $0["taskId"] == .string(id) } == false, "\(workers)")
        #expect(try await server.waitForTask(id)["status"] == "succeeded")
    }

    @Test func asyncAndTaskFlagCallsAreTasks() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let body: JSONValue = ["controlnet_module": "invert", "controlnet_input_images": [.string(try swatch((10, 20, 30))), .string(try swatch((200, 100, 0)))]]

        let (accepted, submitted) = try await server.json(.POST, "/controlnet/detect", body, headers: [("Request-Type", "async")])
        #expect(accepted == 200)
        #expect(submitted["status"] == "waiting")
        let id = try #require(submitted["taskId"]?.stringValue)
        let result = try await server.waitForTask(id)
        #expect(result["status"] == "succeeded", "\(result)")
        #expect(result["responseStatus"] == 200)
        let keys = [JSONValue.string("images/default/\(id)_1.png"), .string("images/default/\(id)_2.png")]
        #expect(result["images"] == .array(keys))
        // The answer as the worker gave it, its images replaced by their keys.
        #expect(result["response"] == ["images": .array(keys), "info": "Success"])
        let url = try #require(result["ossUrl"]?[1]?.stringValue)
        let (downloaded, png) = try await server.request(.GET, url)
        #expect(downloaded == 200)
        #expect(try firstPixel(png.base64EncodedString()) == [55, 155, 255])
        let (_, listed) = try await server.json(.GET, "/tasks?limit=1")
        #expect(listed["tasks"]?[0]?["kind"] == "passthrough")

        // Task-Flag: the answer is the worker's; the task keeps it.
        let answer = try await server.response(.POST, "/controlnet/detect", body: try body.encoded(), headers: [("Task-Flag", "true")])
        #expect(answer.status == 200)
        let flagged = try #require(answer.headers.first(name: "Task-Id"))
        let json = try JSONValue(parsing: answer.body)
        #expect(try firstPixel(try #require(json["images"]?[0]?.stringValue)) == [245, 235, 225])
        let (_, stored) = try await server.json(.GET, "/tasks/\(flagged)/result")
        #expect(stored["status"] == "succeeded")
        #expect(stored["images"]?.arrayValue?.count == 2)

        // A worker's refusal fails the task, keeping its answer.
        let bad: JSONValue = ["controlnet_module": "canny", "controlnet_input_images": ["x"]]
        let refused = try await server.response(.POST, "/controlnet/detect", body: try bad.encoded(), headers: [("Task-Flag", "true")])
        #expect(refused.status == 422)
        let (_, failed) = try await server.json(.GET, "/tasks/\(try #require(refused.headers.first(name: "Task-Id")))/result")
        #expect(failed["status"] == "failed")
        #expect(failed["responseStatus"] == 422)
        #expect(failed["error"]?.stringValue?.contains("Module 'canny' not found") == true)
    }

    @Test func modelWideCallsActOnTheModelsWorkers() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        func workers() async throws -> [JSONValue] { try await server.json(.GET, "/workers").1["workers"]?.arrayValue ?? [] }
        // reload-checkpoint answers once a worker holds the model.
        let (reloaded, reloadAnswer) = try await server.json(.POST, "/sdapi/v1/reload-checkpoint")
        #expect(reloaded == 200)
        #expect(reloadAnswer == [:], "A1111 answers {} to reload-checkpoint")
        #expect(try await workers().map { $0["state"] } == ["ready"])
        #expect(try await server.json(.POST, "/sdapi/v1/refresh-loras").0 == 200)
        // unload-checkpoint stops the idle worker.
        #expect(try await server.json(.POST, "/sdapi/v1/unload-checkpoint").0 == 200)
        let deadline = ContinuousClock.now + .seconds(10)
        while try await !workers().isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(try await workers().isEmpty)
    }

    @Test func pngInfoReadsTheInfotext() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let (_, generated) = try await server.json(.POST, "/sdapi/v1/txt2img", ["prompt": "a red fox", "negative_prompt": "blurry", "steps": 3, "width": 64, "height": 64, "seed": 9])
        let image = try #require(generated["images"]?[0]?.stringValue)
        for sent in [image, "data:image/png;base64," + image] {
            let (status, info) = try await server.json(.POST, "/sdapi/v1/png-info", ["image": .string(sent)])
            #expect(status == 200, "\(info)")
            #expect(info["info"]?.stringValue?.hasPrefix("a red fox\nNegative prompt: blurry\nSteps: 3,") == true)
            #expect(info["parameters"]?["Seed"] == "9")
            #expect(info["parameters"]?["Prompt"] == "a red fox")
            #expect(info["items"] == [:])
        }
        #expect(try await server.json(.POST, "/sdapi/v1/png-info", ["image": .string(try swatch((1, 1, 1)))]).1["info"] == "")
        #expect(try await server.json(.POST, "/sdapi/v1/png-info", ["picture": "x"]).0 == 400)
    }
}

extension JSONValue {
    /// Element `index` of an array; nil when this is not an array or has no such element.
    subscript(index: Int) -> JSONValue? {
        guard let items = arrayValue, items.indices.contains(index) else { return nil }
        return items[index]
    }
}

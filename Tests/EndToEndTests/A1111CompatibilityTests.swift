import Foundation
import NIOHTTP1
import ImageCodec
import SDBoxCore
import Testing

@Suite(.serialized, .timeLimit(.minutes(2))) struct A1111CompatibilityTests {
    @Test func txt2imgAnswersAsA1111() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let (status, answer) = try await server.json(.POST, "/sdapi/v1/txt2img", [
            "prompt": "a red fox", "negative_prompt": "blurry", "steps": 5, "width": 64, "height": 64, "seed": 3,
            "hr_checkpoint_name": nil, "script_name": nil,
        ])
        #expect(status == 200, "\(answer)")
        let image = try #require(answer["images"]?.arrayValue?.first?.stringValue)
        #expect(!image.hasPrefix("data:"))
        let png = try #require(Data(base64Encoded: image))
        #expect(try PNGCodec.decode(png).width == 64)
        #expect(PNGTextChunks.read(from: png)["parameters"]?.contains("Negative prompt: blurry") == true)
        // `info` is a JSON *string*, as A1111 sends it.
        let infoText = try #require(answer["info"]?.stringValue)
        let info = try JSONValue(parsing: Data(infoText.utf8))
        #expect(info["seed"] == 3)
        #expect(info["sd_model_name"] == "demo")
        #expect(info["sd_model_hash"]?.stringValue?.count == 10)
        #expect(info["infotexts"]?.arrayValue?.count == 1)
        #expect(answer["parameters"]?["negative_prompt"] == "blurry")
    }

    /// The answer comes as the worker's images arrive, while the task is recorded; the task's record ends
    /// with the same images. A missing LoRA's note, which sdbox adds, is in the answer too.
    @Test func theAnswerIsTheWorkersAndTheRecordCatchesUp() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let generated = try await server.response(
            .POST, "/sdapi/v1/txt2img", body: try (["prompt": "a fox", "steps": 1, "width": 64, "height": 64, "seed": 9] as JSONValue).encoded()
        )
        #expect(generated.status == 200)
        let answer = try JSONValue(parsing: generated.body)
        let id = try #require(generated.headers.first(name: "taskId"))
        let record = try await server.waitForTask(id)
        #expect(record["status"] == "succeeded")
        let stored = try await server.request(.GET, try #require(record["ossUrl"]?.arrayValue?.first?.stringValue))
        #expect(stored.1 == (answer["images"]?.arrayValue?.first?.stringValue).flatMap { Data(base64Encoded: $0) })

        let (_, noted) = try await server.json(.POST, "/sdapi/v1/txt2img", ["prompt": "a fox <lora:ghost:1>", "steps": 1, "width": 64, "height": 64])
        let info = try JSONValue(parsing: Data(try #require(noted["info"]?.stringValue).utf8))
        #expect(info["comments"]?.stringValue?.contains("Networks not found: ghost") == true, "\(info)")
        #expect(info["lorasNotFound"] == ["ghost"])
    }

    @Test func listingsAndOptionsChooseTheDefaultModel() async throws {
        let server = try await ServerProcess(config: fastWorkers, models: ["second.safetensors": DemoCheckpoint.contents() + Data()])
        defer { server.destroy() }
        // With a checkpoint already present, no demo checkpoint is written.
        let (_, models) = try await server.json(.GET, "/sdapi/v1/sd-models")
        let entries = try #require(models.arrayValue)
        #expect(entries.map { $0["model_name"] } == ["second"])
        // Titles carry the short hash once the file is hashed (in the background, at start).
        var title = try #require(entries.first?["title"]?.stringValue)
        while !title.hasPrefix("second.safetensors [") {
            try await Task.sleep(for: .milliseconds(20))
            title = try #require(try await server.json(.GET, "/sdapi/v1/sd-models").1.arrayValue?.first?["title"]?.stringValue)
        }
        #expect(entries.first?["config"] == .null)

        for path in ["samplers", "schedulers", "upscalers"] {
            let (status, list) = try await server.json(.GET, "/sdapi/v1/\(path)")
            #expect(status == 200)
            #expect((list.arrayValue?.count ?? 0) > 2, "\(path)")
        }
        let (_, samplers) = try await server.json(.GET, "/sdapi/v1/samplers")
        #expect(samplers.arrayValue?.contains { $0["name"] == "Euler a" } == true)

        let (_, options) = try await server.json(.GET, "/sdapi/v1/options")
        #expect(options["sd_model_checkpoint"]?.stringValue == title)

        // Options persist per user and are applied to later requests.
        let (setStatus, _) = try await server.json(.POST, "/sdapi/v1/options", ["sd_model_checkpoint": "second", "CLIP_stop_at_last_layers": 2])
        #expect(setStatus == 200)
        let (_, after) = try await server.json(.GET, "/sdapi/v1/options")
        #expect(after["CLIP_stop_at_last_layers"] == 2)
        let (_, generated) = try await server.json(.POST, "/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "width": 64, "height": 64])
        #expect(generated["parameters"]?["override_settings"]?["CLIP_stop_at_last_layers"] == 2)

        let (unknown, error) = try await server.json(.POST, "/sdapi/v1/options", ["sd_model_checkpoint": "missing.safetensors"])
        #expect(unknown == 404)
        #expect(error["error"] == "model not found")

        // Idle progress, and interrupt with nothing running, answer JSON bodies.
        let (_, progress) = try await server.json(.GET, "/sdapi/v1/progress")
        #expect(progress["progress"] == 0)
        #expect(progress["state"]?["job_count"] == 0)
        #expect(try await server.json(.POST, "/sdapi/v1/interrupt").0 == 200)
        #expect(try await server.json(.GET, "/sdapi/v1/scripts").1["txt2img"] == [])
    }

    @Test func progressAndInterruptFollowTheCallersJob() async throws {
        let server = try await ServerProcess(config: pacedWorkers)
        defer { server.destroy() }
        let generation = Task {
            try await server.json(.POST, "/sdapi/v1/txt2img", ["prompt": "long", "steps": 150, "width": 512, "height": 512, "n_iter": 2])
        }
        var progress = JSONValue.null
        while progress["state"]?["sampling_step"]?.integerValue ?? 0 < 3 {
            try await Task.sleep(for: .milliseconds(30))
            progress = try await server.json(.GET, "/sdapi/v1/progress").1
        }
        #expect(progress["state"]?["job_count"] == 2)
        #expect(progress["state"]?["sampling_steps"] == 150)
        #expect((progress["progress"]?.doubleValue ?? 0) > 0)
        #expect(try await server.json(.POST, "/sdapi/v1/interrupt").0 == 200)
        // Like A1111, an interrupted generation still answers 200 with what was made so far.
        let (status, answer) = try await generation.value
        #expect(status == 200, "\(answer)")
        #expect(answer["images"]?.arrayValue?.count == 1)
    }
}

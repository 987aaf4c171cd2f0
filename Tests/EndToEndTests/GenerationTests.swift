import Foundation
import NIOHTTP1
import ImageCodec
import SDBoxCore
import Testing

/// Server settings for quick tests: 2 ms per step at 512x512 (1 ms at the sizes tests use).
let fastWorkers = """
    workers:
      reference:
        stepMilliseconds: 2
        minimumStepMilliseconds: 1
    """

/// Server settings for tests that watch a task run: 20 ms per step at 512x512.
let pacedWorkers = """
    scheduler:
      maxInstances: 1
    workers:
      reference:
        stepMilliseconds: 20
        minimumStepMilliseconds: 5
    """

@Suite(.serialized, .timeLimit(.minutes(2))) struct GenerationTests {
    @Test func syncTxt2imgReturnsDownloadableSignedImage() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }

        let (status, answer) = try await server.json(.POST, "/txt2img", [
            "stable_diffusion_model": "demo.safetensors", "prompt": "a red fox", "steps": 8, "width": 64, "height": 64, "seed": 42,
        ])
        #expect(status == 200, "\(answer)")
        #expect(answer["status"] == "succeeded")
        let taskID = try #require(answer["taskId"]?.stringValue)
        let url = try #require(answer["ossUrl"]?.arrayValue?.first?.stringValue)
        #expect(answer["ossUrl"]?.arrayValue?.count == 1)

        let (imageStatus, png) = try await server.request(.GET, url)
        #expect(imageStatus == 200)
        let image = try PNGCodec.decode(png)
        #expect(image.width == 64 && image.height == 64)
        let infotext = try #require(PNGTextChunks.read(from: png)["parameters"])
        #expect(infotext.hasPrefix("a red fox\nSteps: 8, Sampler: Euler a"))
        #expect(infotext.contains("Seed: 42, Size: 64x64"))

        // The same URL altered, or with its expiry moved, is refused.
        #expect(try await server.request(.GET, url.replacingOccurrences(of: "_1.png", with: "_2.png")).0 == 403)
        #expect(try await server.request(.GET, url.replacingOccurrences(of: "expires=", with: "expires=9")).0 == 403)
        #expect(try await server.request(.GET, "/objects/images/default/\(taskID)_1.png").0 == 403)

        // The result holds keys, URLs, info as an object and the parameters used.
        let (_, result) = try await server.json(.GET, "/tasks/\(taskID)/result")
        #expect(result["images"] == [.string("images/default/\(taskID)_1.png")])
        #expect(result["info"]?["seed"] == 42)
        #expect(result["info"]?["all_seeds"] == [42])
        #expect(result["parameters"]?["prompt"] == "a red fox")
        #expect(result["parameters"]?["steps"] == 8)

        // The image is stored where the original put it.
        #expect(FileManager.default.fileExists(atPath: server.dataDirectory + "/objects/images/default/\(taskID)_1.png"))

        // Same seed, same picture.
        let (_, again) = try await server.json(.POST, "/txt2img", [
            "stable_diffusion_model": "demo", "prompt": "a red fox", "steps": 8, "width": 64, "height": 64, "seed": 42,
        ])
        let (_, png2) = try await server.request(.GET, try #require(again["ossUrl"]?.arrayValue?.first?.stringValue))
        #expect(try PNGCodec.decode(png2) == image)
    }

    @Test func batchesMakeOneImagePerSeed() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let (status, answer) = try await server.json(.POST, "/txt2img", [
            "prompt": "owls", "steps": 2, "width": 64, "height": 64, "seed": 7, "batch_size": 2, "n_iter": 2,
        ])
        #expect(status == 200, "\(answer)")
        #expect(answer["ossUrl"]?.arrayValue?.count == 4)
        let (_, result) = try await server.json(.GET, "/tasks/\(answer["taskId"]!.stringValue!)/result")
        #expect(result["info"]?["all_seeds"] == [7, 8, 9, 10])
    }

    @Test func asyncTaskShowsRisingProgressThenResult() async throws {
        let server = try await ServerProcess(config: pacedWorkers)
        defer { server.destroy() }
        let (status, accepted) = try await server.json(
            .POST, "/txt2img", ["prompt": "slow fox", "steps": 100, "width": 512, "height": 512],
            headers: [("Request-Type", "async")]
        )
        #expect(status == 200)
        #expect(accepted["status"] == "waiting")
        let id = try #require(accepted["taskId"]?.stringValue)

        var seen: [Double] = []
        while true {
            let (_, progress) = try await server.json(.GET, "/tasks/\(id)/progress")
            #expect(progress["taskId"]?.stringValue == id)
            if progress["status"] == "running", let value = progress["progress"]?.doubleValue, value > 0 {
                seen.append(value)
                #expect(progress["state"]?["sampling_steps"] == 100)
            }
            if progress["status"] == "succeeded" {
                #expect(progress["progress"] == 1)
                break
            }
            try await Task.sleep(for: .milliseconds(60))
        }
        #expect(seen.count >= 3, "progress readings: \(seen)")
        #expect(seen == seen.sorted(), "progress must not go back: \(seen)")
        #expect(Set(seen).count >= 2)

        let result = try await server.waitForTask(id)
        #expect(result["status"] == "succeeded")
        #expect(result["images"]?.arrayValue?.count == 1)
        #expect(result["ossUrl"]?.arrayValue?.count == 1)
        #expect(result["info"]?["steps"] == 100)
        #expect(result["parameters"]?["prompt"] == "slow fox")
    }

    @Test func cancellationInterruptsRunningAndDropsQueued() async throws {
        let server = try await ServerProcess(config: pacedWorkers)
        defer { server.destroy() }
        let body: JSONValue = ["prompt": "long", "steps": 150, "width": 512, "height": 512]
        let (_, first) = try await server.json(.POST, "/txt2img", body, headers: [("Request-Type", "async")])
        let (_, second) = try await server.json(.POST, "/txt2img", body, headers: [("Request-Type", "async")])
        let running = try #require(first["taskId"]?.stringValue)
        let queued = try #require(second["taskId"]?.stringValue)

        // Wait until the first is sampling.
        while true {
            let (_, progress) = try await server.json(.GET, "/tasks/\(running)/progress")
            if progress["state"]?["sampling_step"]?.integerValue ?? 0 > 0 { break }
            try await Task.sleep(for: .milliseconds(30))
        }
        let (_, queuedProgress) = try await server.json(.GET, "/tasks/\(queued)/progress")
        #expect(queuedProgress["status"] == "waiting")
        #expect(queuedProgress["queuePosition"] == 1)
        // The original's shapes: a waiting task's result has its (empty) fields; filters take both names.
        let (_, waitingResult) = try await server.json(.GET, "/tasks/\(queued)/result")
        #expect(waitingResult["status"] == "waiting" && waitingResult["images"] == [] && waitingResult["ossUrl"] == [])
        #expect(waitingResult["info"] == [:] && waitingResult["parameters"] == [:])
        for name in ["waiting", "queued"] {
            let (_, listed) = try await server.json(.GET, "/tasks?state=\(name)")
            #expect(listed["tasks"]?.arrayValue?.compactMap { $0["taskId"]?.stringValue } == [queued], "?state=\(name)")
        }

        let (status, cancelled) = try await server.json(.POST, "/tasks/\(running)/cancellation")
        #expect(status == 200)
        // The answer comes once the interrupted worker let go of the task, far from its 150 steps.
        #expect(cancelled["status"] == "cancelled" && cancelled["message"] == "success")
        #expect(try await server.json(.GET, "/tasks/\(running)/result").1["status"] == "cancelled")

        let (_, dropped) = try await server.json(.POST, "/tasks/\(queued)/cancellation")
        #expect(dropped["status"] == "cancelled")
        #expect(try await server.json(.GET, "/tasks/\(queued)/result").1["status"] == "cancelled")

        // The worker survived the interrupt and serves the next task.
        let workersBefore = server.workerPIDs()
        let (_, next) = try await server.json(.POST, "/txt2img", ["prompt": "next", "steps": 2, "width": 64, "height": 64])
        #expect(next["status"] == "succeeded")
        #expect(server.workerPIDs() == workersBefore)
    }

    @Test func img2imgTakesBase64InitImages() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let red = try solidPNGBase64(width: 32, height: 32, rgb: (255, 0, 0))
        let (status, answer) = try await server.json(.POST, "/img2img", [
            "stable_diffusion_model": "demo.safetensors", "prompt": "a blue fox", "init_images": [.string(red)],
            "denoising_strength": 0.0, "steps": 4, "width": 64, "height": 64,
        ])
        #expect(status == 200, "\(answer)")
        #expect(answer["status"] == "succeeded")
        let (_, png) = try await server.request(.GET, try #require(answer["ossUrl"]?.arrayValue?.first?.stringValue))
        let image = try PNGCodec.decode(png)
        // With denoising strength 0 the output is the init image, scaled to the requested size.
        #expect(image.width == 64 && image.pixels[0] == 255 && image.pixels[1] == 0 && image.pixels[2] == 0)

        let (_, result) = try await server.json(.GET, "/tasks/\(answer["taskId"]!.stringValue!)/result")
        #expect(result["info"]?["denoising_strength"]?.doubleValue == 0)

        // A data: URI is accepted too; bytes that are no image are refused before any worker sees them.
        let (okStatus, _) = try await server.json(.POST, "/img2img", [
            "init_images": [.string("data:image/png;base64," + red)], "steps": 2, "width": 64, "height": 64,
        ])
        #expect(okStatus == 200)
        let (badStatus, bad) = try await server.json(.POST, "/img2img", [
            "init_images": ["bm90IGFuIGltYWdl"], "steps": 2, "width": 64, "height": 64,
        ])
        #expect(badStatus == 400)
        #expect(bad["field"] == "init_images[0]", "\(bad)")
    }
}

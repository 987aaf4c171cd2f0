import AsyncHTTPClient
import Foundation
import ImageCodec
import NIOCore
import NIOHTTP1
import SDBoxCore
import Testing

/// The sdcpp worker installed by `workers/sdcpp/install.sh` (`scripts/test` installs it and sets
/// `SDBOX_SDCPP_VENV`), and the random-weight test models it runs, written once per generator version.
enum SDCpp {
    static let venv = ProcessInfo.processInfo.environment["SDBOX_SDCPP_VENV"] ?? ""
    static var isInstalled: Bool { !venv.isEmpty && FileManager.default.isExecutableFile(atPath: venv + "/bin/sdbox-sdcpp-worker") }
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The test checkpoint and upscaler, made with `sdbox models make-test-checkpoint` under the venv and
    /// named after a hash of the script that writes them, so a changed script writes new ones. Made once,
    /// by the first test that asks; the others await it (the making takes seconds, and a test blocked on a
    /// lazy global would hold one of the few threads every test's async code runs on).
    static func models() async throws -> (checkpoint: String, upscaler: String) { try await madeModels.value }

    private static let madeModels = Task<(checkpoint: String, upscaler: String), any Error> {
        let script = repository + "/workers/sdcpp/sdcpp_worker/test_checkpoint.py"
        guard let version = try? Checkpoint.sha256(ofFileAt: script).prefix(12) else { throw TestFailure("cannot read \(script)") }
        let folder = venv + "/test-models"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let checkpoint = folder + "/sdxs-noise-\(version).safetensors"
        let upscaler = folder + "/esrgan-noise-\(version).safetensors"
        for (path, extra) in [(checkpoint, [String]()), (upscaler, ["--upscaler"])] where !FileManager.default.fileExists(atPath: path) {
            for stale in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where stale.hasSuffix(".safetensors") && !stale.contains(version) {
                try? FileManager.default.removeItem(atPath: folder + "/" + stale)
            }
            let partial = folder + "/partial-" + (path as NSString).lastPathComponent
            let (status, output) = try await runSDBox(["models", "make-test-checkpoint", partial, "--venv", venv] + extra)
            guard status == 0 else { throw TestFailure("sdbox models make-test-checkpoint failed: \(output)") }
            try FileManager.default.moveItem(atPath: partial, toPath: path)
        }
        return (checkpoint, upscaler)
    }

    /// A server with the test checkpoint and upscaler registered in place, whose pools run the built-in
    /// `sdcpp` profile (the venv linked where that profile looks); with `perPool`, only the test
    /// checkpoint's pool does (chosen with `batch_update_sd_resource`) and the others keep the reference worker.
    static func server(perPool: Bool = false) async throws -> ServerProcess {
        let (checkpoint, upscaler) = try await models()
        // One engine thread: workers of other suites run at the same time, and two threads spinning for
        // two busy cores make a generation many times slower.
        let server = try await perPool
            ? ServerProcess(config: "scheduler: {maxInstances: 2}")
            : ServerProcess(config: "scheduler: {maxInstances: 1, pool: {extraArgs: [--threads, '1']}}", environment: ["SDBOX_DEFAULT_PROFILE": "sdcpp"])
        do {
            try FileManager.default.createSymbolicLink(atPath: server.dataDirectory + "/sdcpp-venv", withDestinationPath: venv)
            for (type, path, name) in [("stableDiffusion", checkpoint, "noise.safetensors"), ("upscaler", upscaler, "esrgan-noise-x4.safetensors")] {
                let (status, record) = try await server.json(.POST, "/admin/models/register", ["type": .string(type), "path": .string(path), "name": .string(name)])
                guard status == 201 else { throw TestFailure("register \(name): \(status) \(record)") }
            }
            let deadline = ContinuousClock.now + .seconds(60)
            while try await server.json(.GET, "/models").1.arrayValue?.contains(where: { $0["status"] == "registering" }) != false {
                guard ContinuousClock.now < deadline else { throw TestFailure("models still registering: \(server.log)") }
                try await Task.sleep(for: .milliseconds(100))
            }
            if perPool {
                let (status, answer) = try await server.json(
                    .POST, "/batch_update_sd_resource", ["models": ["noise.safetensors"], "image": "sdcpp", "extraArgs": "--threads 1"]
                )
                guard status == 200 else { throw TestFailure("batch_update_sd_resource: \(status) \(answer)") }
            }
        } catch {
            server.destroy()
            throw error
        }
        return server
    }
}

/// Real diffusion through sdbox: the sdcpp worker (stable-diffusion.cpp behind the A1111 API) on a
/// random-weight SDXS-style checkpoint. The images are noise, but every one of them is sampled.
@Suite(
    .serialized, .timeLimit(.minutes(3)),
    .enabled(if: SDCpp.isInstalled, "the sdcpp worker is not installed: set SDBOX_SDCPP_VENV to a venv made by workers/sdcpp/install.sh (scripts/test does)")
)
struct SDCppWorkerTests {
    let small: JSONValue = ["stable_diffusion_model": "noise", "prompt": "a red fox", "steps": 2, "width": 64, "height": 64, "cfg_scale": 1]

    func image(_ server: ServerProcess, _ answer: JSONValue, _ index: Int = 0) async throws -> (PixelImage, Data) {
        let url = try #require(answer["ossUrl"]?.arrayValue?[index].stringValue, "\(answer)")
        let (status, png) = try await server.request(.GET, url)
        #expect(status == 200)
        return (try PNGCodec.decode(png), png)
    }

    func with(_ body: JSONValue, _ changes: [String: JSONValue]) -> JSONValue {
        .object((body.objectValue ?? [:]).merging(changes) { _, new in new })
    }

    @Test func txt2imgIsSampledAndTheSameForTheSameSeed() async throws {
        let server = try await SDCpp.server()
        defer { server.destroy() }
        let (status, answer) = try await server.json(.POST, "/txt2img", with(small, ["seed": 42]))
        #expect(status == 200, "\(answer)")
        #expect(answer["status"] == "succeeded")
        let (first, png) = try await image(server, answer)
        #expect(first.width == 64 && first.height == 64)
        #expect(Set(first.pixels).count > 16, "a sampled image is not flat")
        let model = try #require(try await server.json(.GET, "/models").1.arrayValue?.first { $0["name"] == "noise.safetensors" })
        let infotext = try #require(PNGTextChunks.read(from: png)["parameters"])
        #expect(infotext.hasPrefix("a red fox\nSteps: 2, Sampler: Euler a, Schedule type: Automatic, CFG scale: 1.0, Seed: 42, Size: 64x64"))
        #expect(infotext.contains("Model hash: \(model["shortHash"]?.stringValue ?? "?"), Model: noise"), "\(infotext) \(model)")
        #expect(infotext.hasSuffix("Version: sdbox-sdcpp"))

        let (_, again) = try await server.json(.POST, "/txt2img", with(small, ["seed": 42]))
        #expect(try await image(server, again).0 == first, "the same seed gives the same pixels")

        // A batch has one seed per image, as A1111: its second image is the one of seed 43 alone.
        let (_, batch) = try await server.json(.POST, "/sdapi/v1/txt2img", with(small, ["seed": 42, "batch_size": 2]))
        let info = try JSONValue(parsing: Data(try #require(batch["info"]?.stringValue).utf8))
        #expect(info["all_seeds"] == [42, 43])
        #expect(info["sd_model_hash"] == model["shortHash"])
        let batchImages = try #require(batch["images"]?.arrayValue)
        #expect(batchImages.count == 2)
        let second = try PNGCodec.decode(try #require(Data(base64Encoded: batchImages[1].stringValue ?? "")))
        #expect(second != first)
        let (_, alone) = try await server.json(.POST, "/txt2img", with(small, ["seed": 43]))
        #expect(try await image(server, alone).0 == second)
    }

    @Test func img2imgRepaintsOnlyTheMaskedPartOnAPoolThatChoseSdcpp() async throws {
        let server = try await SDCpp.server(perPool: true)
        defer { server.destroy() }
        let red = try solidPNGBase64(width: 64, height: 64, rgb: (200, 30, 30))
        var mask: [UInt8] = []
        for _ in 0..<64 { for x in 0..<64 { mask += Array(repeating: x < 32 ? 0 : 255, count: 3) } }
        let maskPNG = try PNGCodec.encode(PixelImage(width: 64, height: 64, pixels: mask)).base64EncodedString()
        let (status, answer) = try await server.json(.POST, "/img2img", with(small, [
            "init_images": [.string("data:image/png;base64," + red)], "mask": .string(maskPNG), "mask_blur": 0,
            "denoising_strength": 0.6, "steps": 4, "seed": 3,
        ]))
        #expect(status == 200, "\(answer)")
        let (output, png) = try await image(server, answer)
        func pixel(_ x: Int, _ y: Int) -> [UInt8] { Array(output.pixels[(y * 64 + x) * 3..<(y * 64 + x) * 3 + 3]) }
        #expect((0..<64).allSatisfy { y in (0..<32).allSatisfy { x in pixel(x, y) == [200, 30, 30] } }, "black in the mask is kept")
        #expect((0..<64).contains { y in (32..<64).contains { x in pixel(x, y) != [200, 30, 30] } }, "white in the mask is repainted")
        #expect(PNGTextChunks.read(from: png)["parameters"]?.hasSuffix("Denoising strength: 0.6, Version: sdbox-sdcpp") == true)

        // Without a mask the whole image is repainted; with denoising strength 0 it is the init image.
        let (_, whole) = try await server.json(.POST, "/img2img", with(small, ["init_images": [.string(red)], "denoising_strength": 0.6, "steps": 4]))
        #expect(try await image(server, whole).0.pixels.prefix(3) != [200, 30, 30])
        let (_, kept) = try await server.json(.POST, "/img2img", with(small, ["init_images": [.string(red)], "denoising_strength": 0.0]))
        #expect(Set(try await image(server, kept).0.pixels) == [200, 30])

        // The other pool kept the reference worker.
        let (_, demo) = try await server.json(.POST, "/txt2img", with(small, ["stable_diffusion_model": "demo"]))
        #expect(PNGTextChunks.read(from: try await image(server, demo).1)["parameters"]?.hasSuffix("Version: sdbox-reference") == true)
    }

    @Test func progressRisesAndCancellingStopsBetweenImages() async throws {
        let server = try await SDCpp.server()
        defer { server.destroy() }
        let (_, accepted) = try await server.json(.POST, "/txt2img", with(small, ["steps": 3, "n_iter": 4]), headers: [("Request-Type", "async")])
        let id = try #require(accepted["taskId"]?.stringValue)
        var readings: [Double] = []
        let deadline = ContinuousClock.now + .seconds(90)
        while ContinuousClock.now < deadline {
            let (_, progress) = try await server.json(.GET, "/tasks/\(id)/progress")
            if progress["status"] == "running", let value = progress["progress"]?.doubleValue, value > 0 {
                readings.append(value)
                #expect(progress["state"]?["sampling_steps"] == 3)
                #expect(progress["state"]?["job_count"] == 4)
                if value >= 0.3 { break }
            }
            try await Task.sleep(for: .milliseconds(40))
        }
        #expect(readings.count >= 2 && readings.last! > readings.first!, "progress rises: \(readings)")
        #expect(readings == readings.sorted(), "progress never goes back: \(readings)")

        let (status, cancelled) = try await server.json(.POST, "/tasks/\(id)/cancellation")
        #expect(status == 200)
        #expect(cancelled["status"] == "cancelled")
        // The worker finishes the image it is sampling, then stops: the next task runs on the same worker.
        let workers = server.workerPIDs()
        let (_, next) = try await server.json(.POST, "/txt2img", small)
        #expect(next["status"] == "succeeded", "\(next)")
        #expect(server.workerPIDs() == workers)
        let (_, result) = try await server.json(.GET, "/tasks/\(id)/result")
        #expect(result["status"] == "cancelled")
        #expect((result["images"]?.arrayValue?.count ?? 0) < 4, "\(result)")
    }

    @Test func extraImagesUpscaleWithTheRegisteredESRGAN() async throws {
        let server = try await SDCpp.server()
        defer { server.destroy() }
        let (_, generated) = try await server.json(.POST, "/txt2img", with(small, ["seed": 7]))
        let (source, png) = try await image(server, generated)
        let (status, answer) = try await server.json(.POST, "/extra_images", [
            "stable_diffusion_model": "noise", "image": .string(png.base64EncodedString()), "upscaler_1": "esrgan-noise-x4", "upscaling_resize": 2,
        ])
        #expect(status == 200, "\(answer)")
        let (upscaled, upscaledPNG) = try await image(server, answer)
        #expect(upscaled.width == 128 && upscaled.height == 128)
        let text = PNGTextChunks.read(from: upscaledPNG)
        #expect(text["postprocessing"] == "Postprocess upscale by: 2.0, Postprocess upscaler: esrgan-noise-x4")
        #expect(text["parameters"] == PNGTextChunks.read(from: png)["parameters"])
        #expect(meanDifference(upscaled, source) < 24, "the ESRGAN output resembles its source")

        // An upscaler the worker does not have fails the task with the worker's reason.
        let (unknown, failure) = try await server.json(.POST, "/sdapi/v1/extra-single-image", [
            "stable_diffusion_model": "noise", "image": .string(png.base64EncodedString()), "upscaler_1": "SwinIR 4x",
        ])
        #expect(unknown == 500)
        #expect(failure["detail"]?.stringValue?.contains("could not find upscaler named 'SwinIR 4x'") == true, "\(failure)")
    }

    @Test func doctorFindsAndStartsTheSdcppWorker() async throws {
        let server = try await SDCpp.server()
        defer { server.destroy() }
        let port = try #require(FreePort.allocate())
        let (status, output) = try await runSDBox(
            ["doctor", "--data-dir", server.dataDirectory, "--port", "\(port)"], environment: ["SDBOX_DEFAULT_PROFILE": "sdcpp"]
        )
        #expect(status == 0 && !output.contains("[FAIL]"), "\(output)")
        #expect(output.contains("worker backend: profile 'sdcpp': \(server.dataDirectory)/sdcpp-venv/bin/sdbox-sdcpp-worker"), "\(output)")
        #expect(output.contains("worker start: loaded noise.safetensors"), "\(output)")
    }

    /// The worker's own A1111 answers, called directly: listings, options, and upscaling with the test
    /// ESRGAN (which enlarges about like nearest-neighbour, so the output still looks like the input).
    @Test func workerAnswersAsA1111AndUpscalesWithESRGAN() async throws {
        let (checkpoint, upscaler) = try await SDCpp.models()
        let port = try #require(FreePort.allocate())
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sdcpp-worker-\(port).log").path
        let pid = try spawn(
            [SDCpp.venv + "/bin/sdbox-sdcpp-worker", "--port", "\(port)", "--ckpt", checkpoint, "--upscaler", upscaler, "--threads", "1"], output: log
        )
        defer {
            kill(-pid, SIGKILL)
            waitpid(pid, nil, 0)
            try? FileManager.default.removeItem(atPath: log)
        }
        let worker = WorkerConnection(port: port)
        let deadline = ContinuousClock.now + .seconds(60)
        while (try? await worker.json(.GET, "/internal/ping"))?.0 != 200 {
            guard ContinuousClock.now < deadline, waitpid(pid, nil, WNOHANG) == 0 else {
                throw TestFailure("the worker did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let sha256 = try Checkpoint.sha256(ofFileAt: checkpoint)
        let models = try await worker.json(.GET, "/sdapi/v1/sd-models").1
        #expect(models.arrayValue?.first?["sha256"] == .string(sha256))
        #expect(models.arrayValue?.first?["title"] == .string((checkpoint as NSString).lastPathComponent + " [\(sha256.prefix(10))]"))
        #expect(try await worker.json(.GET, "/sdapi/v1/samplers").1.arrayValue?.contains { $0["name"] == "Euler a" } == true)
        for list in ["face-restorers", "realesrgan-models", "hypernetworks", "extensions", "script-info"] {
            #expect(try await worker.json(.GET, "/sdapi/v1/\(list)") == (200, []), "GET \(list): A1111's list, empty")
        }
        #expect(try await worker.json(.GET, "/sdapi/v1/schedulers").1.arrayValue?.contains { $0["label"] == "Karras" } == true)
        let upscalerName = ((upscaler as NSString).lastPathComponent as NSString).deletingPathExtension
        #expect(try await worker.json(.GET, "/sdapi/v1/upscalers").1.arrayValue?.map { $0["name"]?.stringValue ?? "" } == ["None", "Lanczos", "Nearest", upscalerName])
        #expect(try await worker.json(.POST, "/sdapi/v1/options", ["CLIP_stop_at_last_layers": 2]).0 == 200)
        #expect(try await worker.json(.GET, "/sdapi/v1/options").1["CLIP_stop_at_last_layers"] == 2)
        let (unknown, refusal) = try await worker.json(.POST, "/sdapi/v1/txt2img", ["sampler_name": "UniPC"])
        #expect(unknown == 404 && refusal["detail"]?.stringValue?.contains("UniPC") == true, "\(refusal)")

        // A 32x24 picture of four coloured quarters, upscaled x2 by the ESRGAN.
        var pixels: [UInt8] = []
        for y in 0..<24 { for x in 0..<32 { pixels += x < 16 ? (y < 12 ? [220, 20, 20] : [20, 220, 20]) : (y < 12 ? [20, 20, 220] : [230, 230, 30]) } }
        let source = PixelImage(width: 32, height: 24, pixels: pixels)
        let (status, answer) = try await worker.json(.POST, "/sdapi/v1/extra-single-image", [
            "image": .string(try PNGCodec.encode(source).base64EncodedString()), "upscaler_1": .string(upscalerName), "upscaling_resize": 2,
        ])
        #expect(status == 200, "\(answer)")
        #expect(answer["html_info"] == .string("<p>Postprocess upscale by: 2.0, Postprocess upscaler: \(upscalerName)</p>"))
        let png = try #require(Data(base64Encoded: answer["image"]?.stringValue ?? ""))
        let upscaled = try PNGCodec.decode(png)
        #expect(upscaled.width == 64 && upscaled.height == 48)
        #expect(meanDifference(upscaled, source) < 24, "the upscaled image resembles its source")
        #expect(PNGTextChunks.read(from: png)["postprocessing"]?.contains(upscalerName) == true)

        // Parking: the checkpoint is freed and the process kept; a generation, or a reload, brings it back.
        #expect(try await worker.json(.GET, "/internal/ping").1["loaded"] == true)
        #expect(try await worker.json(.POST, "/sdapi/v1/unload-checkpoint").0 == 200)
        #expect(try await worker.json(.GET, "/internal/ping").1["loaded"] == false)
        let (regenerated, image) = try await worker.json(.POST, "/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "width": 64, "height": 64, "cfg_scale": 1])
        #expect(regenerated == 200 && image["images"]?.arrayValue?.count == 1, "\(image)")
        #expect(try await worker.json(.GET, "/internal/ping").1["loaded"] == true)
        #expect(try await worker.json(.POST, "/sdapi/v1/unload-checkpoint").0 == 200)
        #expect(try await worker.json(.POST, "/sdapi/v1/reload-checkpoint").0 == 200)
        #expect(try await worker.json(.GET, "/internal/ping").1["loaded"] == true)
    }
}

/// The mean difference per channel between `large` and `small` enlarged by nearest-neighbour.
func meanDifference(_ large: PixelImage, _ small: PixelImage) -> Int {
    var difference = 0
    for y in 0..<large.height {
        for x in 0..<large.width {
            let source = (y * small.height / large.height * small.width + x * small.width / large.width) * 3
            for channel in 0..<3 { difference += abs(Int(large.pixels[(y * large.width + x) * 3 + channel]) - Int(small.pixels[source + channel])) }
        }
    }
    return difference / (large.width * large.height * 3)
}

/// JSON calls to a worker started by a test.
struct WorkerConnection {
    let port: Int

    func json(_ method: HTTPMethod, _ path: String, _ body: JSONValue? = nil) async throws -> (Int, JSONValue) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = method
        if let body { request.body = .bytes(ByteBuffer(bytes: try body.encoded())) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        return (Int(response.status.code), try JSONValue(parsing: Data(bytes.readableBytesView)))
    }
}

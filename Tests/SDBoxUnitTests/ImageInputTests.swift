@testable import Appliance
import Foundation
import HTTPTypes
import ImageCodec
import ObjectStore
import ReferenceWorker
import SDBoxCore
import SDBoxServer
import Testing

@Suite struct ImageInputResolverTests {
    let directory: TemporaryDirectory
    let objects: ObjectStore
    let resolver: ImageInputResolver
    let png: Data

    init() throws {
        directory = try TemporaryDirectory()
        objects = try ObjectStore(root: directory.path)
        resolver = ImageInputResolver(objects: objects, maxPixels: 128 * 128)
        png = try PNGCodec.encode(TestImageRenderer.render(prompt: "fox", seed: 1, width: 64, height: 48, steps: 2), text: [("parameters", "fox")])
    }

    func field(of error: any Error) -> String? {
        (error as? APIError)?.extra["field"]?.stringValue
    }

    @Test func base64AndStoredKeysGiveTheSameWorkerRequest() async throws {
        try await objects.put(png, key: "inputs/default/fox.png")
        try await objects.put(png, key: "images/default/abc_1.png")
        let base64 = png.base64EncodedString()
        let inline: JSONValue = [
            "prompt": "fox", "init_images": [.string(base64)], "mask": .string("data:image/png;base64," + base64),
            "alwayson_scripts": ["controlnet": ["args": [["image": .string(base64), "module": "canny"], ["enabled": false]]]],
        ]
        let stored: JSONValue = [
            "prompt": "fox", "init_images": ["inputs/default/fox.png"], "mask": "images/default/abc_1.png",
            "alwayson_scripts": ["controlnet": ["args": [["image": "inputs/default/fox.png", "module": "canny"], ["enabled": false]]]],
        ]
        let fromInline = try await resolver.resolveGeneration(inline, user: "default")
        let fromStored = try await resolver.resolveGeneration(stored, user: "default")
        #expect(fromInline == fromStored)
        // A PNG reaches the worker as it was given, text chunks and all.
        #expect(fromStored["init_images"] == [.string(base64)])
        #expect(fromStored["mask"] == .string(base64))
        #expect(fromStored["alwayson_scripts"]?["controlnet"]?["args"]?.arrayValue?.first?["image"] == .string(base64))
    }

    @Test func storedKeysAnywhereInAnExtensionsArgumentsAreResolved() async throws {
        try await objects.put(png, key: "inputs/default/face.png")
        try await objects.put(png, key: "images/bob/secret_1.png")
        let base64 = JSONValue.string(png.base64EncodedString())
        let body: JSONValue = [
            "prompt": "fox",
            "alwayson_scripts": [
                "ADetailer": ["args": [true, ["ad_model": "face_yolov8n.pt", "ad_prompt": "a face", "ad_reference": "inputs/default/face.png"]]],
                "controlnet": ["args": [["image": ["image": "inputs/default/face.png", "mask": ""], "model": "control_v11p_sd15_canny.pth"]]],
            ],
        ]
        let resolved = try await resolver.resolveGeneration(body, user: "default")
        let scripts = resolved["alwayson_scripts"]
        #expect(scripts?["ADetailer"]?["args"]?.arrayValue?.last?["ad_reference"] == base64)
        #expect(scripts?["ADetailer"]?["args"]?.arrayValue?.last?["ad_model"] == "face_yolov8n.pt", "a model name is left alone")
        #expect(scripts?["controlnet"]?["args"]?.arrayValue?.first?["image"] == ["image": base64, "mask": ""])
        #expect(scripts?["controlnet"]?["args"]?.arrayValue?.first?["model"] == "control_v11p_sd15_canny.pth")
        // Another user's image is refused by name, wherever it is.
        let stolen: JSONValue = ["alwayson_scripts": ["IP-Adapter": ["args": [["image": "images/bob/secret_1.png"]]]]]
        await #expect(throws: APIError.self) { try await resolver.resolveGeneration(stolen, user: "default") }
        do {
            _ = try await resolver.resolveGeneration(stolen, user: "default")
        } catch {
            #expect(field(of: error) == "alwayson_scripts.IP-Adapter.args[0].image")
        }
    }

    @Test func emptyMasksMeanNone() async throws {
        let body: JSONValue = ["init_images": [.string(png.base64EncodedString())], "mask": "", "alwayson_scripts": ["controlnet": ["args": [["image": ""]]]]]
        let resolved = try await resolver.resolveGeneration(body, user: "default")
        #expect(resolved == body)
    }

    @Test func jpegAndWebPReachTheWorkerAsPNG() async throws {
        let picture = try PNGCodec.decode(png)
        let jpeg = try JPEGCodec.encode(picture)
        try await objects.put(jpeg, key: "inputs/default/fox.jpeg")
        let inputs: [(JSONValue, Int)] = [(.string(jpeg.base64EncodedString()), 64), ("inputs/default/fox.jpeg", 64), (.string(tinyWebP.base64EncodedString()), 3)]
        for (input, width) in inputs {
            let resolved = try await resolver.resolveGeneration(["init_images": [input]], user: "default")
            let base64 = try #require(resolved["init_images"]?.arrayValue?.first?.stringValue)
            let sent = try #require(Data(base64Encoded: base64))
            #expect(PNGCodec.isPNG(sent))
            #expect(try PNGCodec.decode(sent).width == width)
        }
    }

    @Test(arguments: [
        "../../etc/passwd.png", "/etc/passwd.png", "inputs/default/../../../etc/x.png", "inputs/default/.hidden.png",
        "inputs/alice/fox.png", "images/alice/abc_1.png", "inputs/default/fox.gif", "inputs/default/missing.png",
    ])
    func refusesKeysOutsideTheCallersImages(key: String) async throws {
        try await objects.put(png, key: "inputs/alice/fox.png")
        try await objects.put(png, key: "images/alice/abc_1.png")
        try await objects.put(png, key: "inputs/default/ok.png")
        await #expect { try await resolver.resolveGeneration(["init_images": ["inputs/default/ok.png", .string(key)]], user: "default") } throws: { error in
            (error as? APIError)?.error == "invalid image" && field(of: error) == "init_images[1]"
        }
    }

    @Test func refusesSymbolicLinksLeadingOut() async throws {
        let outside = try TemporaryDirectory()
        try png.write(to: URL(fileURLWithPath: outside.path + "/secret.png"))
        try FileManager.default.createDirectory(atPath: directory.path + "/inputs/default", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: directory.path + "/inputs/default/link.png", withDestinationPath: outside.path + "/secret.png")
        try FileManager.default.createSymbolicLink(atPath: directory.path + "/inputs/default/dir", withDestinationPath: outside.path)
        for key in ["inputs/default/link.png", "inputs/default/dir/secret.png"] {
            await #expect { try await resolver.resolveGeneration(["mask": .string(key)], user: "default") } throws: { error in
                field(of: error) == "mask" && "\(error)".contains("invalid stored image key")
            }
        }
    }

    @Test func refusesCorruptAndOversizedImages() async throws {
        let big = try PNGCodec.encode(PixelImage(width: 129, height: 128))
        for (value, message) in [
            (png.prefix(png.count - 20).base64EncodedString(), "PNG decoding failed"),
            (Data("hello".utf8).base64EncodedString(), "not a PNG, JPEG or WebP"),
            ("%%%", "not base64"),
            (big.base64EncodedString(), "over the limit of 16384 pixels"),
        ] {
            await #expect { try await resolver.resolveGeneration(["init_images": [.string(value)]], user: "default") } throws: { error in
                (error as? APIError)?.error == "invalid image" && "\(error)".contains(message)
            }
        }
        await #expect { try await resolver.resolveGeneration(["init_images": [3]], user: "default") } throws: { field(of: $0) == "init_images[0]" }
    }

    /// An image file over `images.maxInputMiB` is refused with 413 before it is decoded, inline or stored.
    @Test func refusesImageFilesOverTheByteLimit() async throws {
        let small = ImageInputResolver(objects: objects, maxPixels: 128 * 128, maxBytes: png.count - 1)
        try await objects.put(png, key: "inputs/default/fox.png")
        for input: JSONValue in [.string(png.base64EncodedString()), .string("data:image/png;base64," + png.base64EncodedString()), "inputs/default/fox.png"] {
            await #expect { try await small.resolveGeneration(["init_images": [input]], user: "default") } throws: { error in
                let error = error as? APIError
                return error?.status.code == 413 && error?.extra["field"] == "init_images[0]" && error?.detail.contains("images.maxInputMiB") == true
            }
        }
        let exact = ImageInputResolver(objects: objects, maxPixels: 128 * 128, maxBytes: png.count)
        _ = try await exact.resolveGeneration(["init_images": [.string(png.base64EncodedString())]], user: "default")
    }

    @Test func extrasImagesAreResolvedWithTheirSizes() async throws {
        try await objects.put(png, key: "inputs/default/fox.png")
        let single = try await resolver.resolveExtras(["image": "inputs/default/fox.png", "upscaler_1": "Lanczos"], kind: .extraSingleImage, user: "default")
        #expect(single.body["image"] == .string(png.base64EncodedString()))
        #expect(single.sizes.map { [$0.width, $0.height] } == [[64, 48]])
        let batch = try await resolver.resolveExtras(
            ["imageList": [["data": "inputs/default/fox.png", "name": "a"], ["data": .string(tinyWebP.base64EncodedString()), "name": "b"]]],
            kind: .extraBatchImages, user: "default"
        )
        #expect(batch.sizes.map { [$0.width, $0.height] } == [[64, 48], [3, 2]])
        #expect(batch.body["imageList"]?.arrayValue?.first?["name"] == "a")
    }
}

@Suite struct ExtrasRequestTests {
    @Test func readsA1111sDefaultsAndSizes() throws {
        let request = try ExtrasRequest(kind: .extraSingleImage, body: ["image": "x.png", "stable_diffusion_model": "demo", "upscaler_1": "Lanczos"])
        #expect(request.model == "demo")
        #expect(request.workerBody["stable_diffusion_model"] == nil)
        #expect(request.scale == 2 && request.resizeMode == 0 && request.crop)
        #expect(request.outputSize(width: 64, height: 48) == (128, 96))
        let to = try ExtrasRequest(kind: .extraSingleImage, body: ["image": "x", "upscaler_1": "Nearest", "resize_mode": 1, "upscaling_resize_w": 300, "upscaling_resize_h": 100])
        #expect(to.outputSize(width: 64, height: 48) == (300, 100))
        let uncropped = try ExtrasRequest(
            kind: .extraSingleImage, body: ["image": "x", "upscaler_1": "Nearest", "resize_mode": 1, "upscaling_resize_w": 300, "upscaling_resize_h": 100, "upscaling_crop": false]
        )
        #expect(uncropped.outputSize(width: 64, height: 48) == (300, 225))
        let none = try ExtrasRequest(kind: .extraSingleImage, body: ["image": "x", "upscaling_resize": 4])
        #expect(none.outputSize(width: 64, height: 48) == (64, 48))
    }

    static let badBodies: [(JSONValue, String)] = [
        (["upscaler_1": "Lanczos"], "image"),
        (["image": "x", "upscaling_resize": 9], "upscaling_resize"),
        (["image": "x", "upscaling_resize": "2"], "upscaling_resize"),
        (["image": "x", "resize_mode": 2], "resize_mode"),
        (["image": "x", "resize_mode": 1, "upscaling_resize_w": 0], "upscaling_resize_w"),
        (["image": "x", "upscaling_crop": "yes"], "upscaling_crop"),
    ]

    @Test(arguments: badBodies)
    func namesTheBadField(body: JSONValue, field: String) {
        #expect { try ExtrasRequest(kind: .extraSingleImage, body: body) } throws: { ($0 as? RequestValidationError)?.field == field }
    }

    @Test func batchesNeedImagesWithinTheLimit() {
        #expect { try ExtrasRequest(kind: .extraBatchImages, body: ["imageList": []]) } throws: { ($0 as? RequestValidationError)?.field == "imageList" }
        #expect { try ExtrasRequest(kind: .extraBatchImages, body: ["imageList": [["name": "a"]]]) } throws: {
            ($0 as? RequestValidationError)?.field == "imageList[0].data"
        }
        let many = JSONValue.array(Array(repeating: ["data": "x", "name": "a"], count: 3))
        #expect { try ExtrasRequest(kind: .extraBatchImages, body: ["imageList": many], limits: GenerationLimits(maxImages: 2)) } throws: {
            ($0 as? RequestValidationError)?.field == "imageList"
        }
    }
}

@Suite struct ImageConfigurationTests {
    @Test func readsTheImagesSection() throws {
        let config = try ServerConfiguration.load(yaml: """
            images:
              maxPixels: 1048576
              maxInputMiB: 8
              thumbnailSide: 128
              thumbnailQuality: 70
              retentionDays: 30
              sweepIntervalMinutes: 15
              minFreeDiskMiB: 0
              postprocessingModel: upscaler.safetensors
            """)
        #expect(config.images.maxPixels == 1 << 20)
        #expect(config.images.maxInputMiB == 8)
        #expect(config.images.thumbnailSide == 128)
        #expect(config.images.thumbnailQuality == 70)
        #expect(config.images.retentionDays == 30)
        #expect(config.images.sweepIntervalMinutes == 15)
        #expect(config.images.minFreeDiskMiB == 0)
        #expect(config.images.postprocessingModel == "upscaler.safetensors")
        #expect(ServerConfiguration().images == ImageSettings())
    }

    @Test(arguments: [("images:\n  thumbnailSize: 1", "images.thumbnailSize"), ("images:\n  thumbnailQuality: 101", "images.thumbnailQuality")])
    func errorsNameTheKey(yaml: String, key: String) {
        #expect { try ServerConfiguration.load(yaml: yaml) } throws: { "\($0)".hasPrefix(key) }
    }
}

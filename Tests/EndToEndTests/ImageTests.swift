import AsyncHTTPClient
import Foundation
import ImageCodec
import NIOCore
import NIOHTTP1
import SDBoxCore
import Testing

extension ServerProcess {
    /// Sends a request and returns the status, the headers and the body.
    func exchange(_ method: HTTPMethod, _ path: String, body: Data? = nil, headers: [(String, String)] = []) async throws -> (Int, HTTPHeaders, Data) {
        var request = HTTPClientRequest(url: path.hasPrefix("http") ? path : baseURL + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 256 << 20)
        return (Int(response.status.code), response.headers, Data(bytes.readableBytesView))
    }

    /// Makes a picture with txt2img and returns its task id and PNG.
    func picture(width: Int = 96, height: Int = 64, seed: Int64 = 5) async throws -> (taskID: String, png: Data) {
        let (status, answer) = try await json(.POST, "/txt2img", ["prompt": "a fox", "steps": 2, "width": .integer(Int64(width)), "height": .integer(Int64(height)), "seed": .integer(seed)])
        guard status == 200, let id = answer["taskId"]?.stringValue, let url = answer["ossUrl"]?.arrayValue?.first?.stringValue else {
            throw TestFailure("txt2img answered \(status): \(answer)")
        }
        return (id, try await request(.GET, url).1)
    }

    /// Uploads an image with PUT and returns the key sdbox answered.
    func upload(_ data: Data, key: String) async throws -> (Int, JSONValue) {
        let (status, body) = try await request(.PUT, "/objects/" + key, body: data)
        return (status, (try? JSONValue(parsing: body)) ?? .null)
    }
}

/// A `multipart/form-data` body with the given parts (name, file name or nil, content).
func multipart(_ parts: [(String, String?, Data)], boundary: String = "sdbox-test-boundary") -> Data {
    var body = Data()
    for (name, fileName, content) in parts {
        body.append(Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"".utf8))
        if let fileName { body.append(Data("; filename=\"\(fileName)\"\r\nContent-Type: application/octet-stream".utf8)) }
        body.append(Data("\r\n\r\n".utf8) + content + Data("\r\n".utf8))
    }
    body.append(Data("--\(boundary)--\r\n".utf8))
    return body
}

@Suite(.serialized, .timeLimit(.minutes(2))) struct ImageInputEndToEndTests {
    @Test func storedKeysAndBase64GiveTheSameResult() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let (sourceID, png) = try await server.picture()

        let (putStatus, put) = try await server.upload(png, key: "inputs/default/fox.png")
        #expect(putStatus == 201, "\(put)")
        #expect(put["key"] == "inputs/default/fox.png")
        let jpeg = try JPEGCodec.encode(try PNGCodec.decode(png))
        let boundary = "b0undary"
        let (postStatus, postBody) = try await server.request(
            .POST, "/objects", body: multipart([("file", "fox.jpg", jpeg)], boundary: boundary),
            headers: [("Content-Type", "multipart/form-data; boundary=\(boundary)")]
        )
        let posted = try JSONValue(parsing: postBody)
        #expect(postStatus == 201, "\(posted)")
        let jpegKey = try #require(posted["key"]?.stringValue)
        #expect(jpegKey.hasPrefix("inputs/default/") && jpegKey.hasSuffix(".jpg"))
        let (_, named) = try await server.request(
            .POST, "/objects", body: multipart([("key", nil, Data("inputs/default/sub/named.png".utf8)), ("file", "x.png", png)], boundary: boundary),
            headers: [("Content-Type", "multipart/form-data; boundary=\"\(boundary)\"")]
        )
        #expect(try JSONValue(parsing: named)["key"] == "inputs/default/sub/named.png")

        // The same init image and mask as base64, as uploaded keys, and as the key of an earlier output
        // make the same picture.
        func img2img(_ image: JSONValue, mask: JSONValue) async throws -> Data {
            let (status, answer) = try await server.json(.POST, "/img2img", [
                "prompt": "a fox in snow", "init_images": [image], "mask": mask, "seed": 9, "steps": 2, "width": 64, "height": 64,
                "denoising_strength": 0.5,
            ])
            #expect(status == 200, "\(answer)")
            return try await server.request(.GET, try #require(answer["ossUrl"]?.arrayValue?.first?.stringValue)).1
        }
        let base64 = png.base64EncodedString()
        let fromBase64 = try await img2img(.string(base64), mask: .string("data:image/png;base64," + base64))
        #expect(try await img2img("inputs/default/fox.png", mask: "inputs/default/sub/named.png") == fromBase64)
        #expect(try await img2img(.string("images/default/\(sourceID)_1.png"), mask: "inputs/default/fox.png") == fromBase64)
        // A JPEG input reaches the worker as PNG: the same picture, up to JPEG's loss.
        let fromJPEG = try PNGCodec.decode(try await img2img(.string(jpegKey), mask: .string(jpegKey)))
        let expected = try PNGCodec.decode(fromBase64)
        let error = zip(fromJPEG.pixels, expected.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +) / expected.pixels.count
        #expect(error < 8)
    }

    @Test func traversalAndForeignKeysAreRefused() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let (_, png) = try await server.picture()
        for key in ["images/default/mine.png", "inputs/alice/x.png", "thumbnails/default/x.jpg", "inputs/default/%2e%2e/%2e%2e/url-signing.png"] {
            let (status, answer) = try await server.upload(png, key: key)
            #expect([400, 403].contains(status), "\(key): \(answer)")
            #expect(answer["error"] != nil)
        }
        #expect(!FileManager.default.fileExists(atPath: server.dataDirectory + "/url-signing.png"))
        for key in ["../../url-signing.key.png", "/etc/passwd.png", "inputs/default/../../../url-signing.png", "inputs/alice/x.png", "inputs/default/nothing.png"] {
            let (status, answer) = try await server.json(.POST, "/img2img", ["init_images": [.string(key)], "steps": 2, "width": 64, "height": 64])
            #expect(status == 400, "\(key): \(answer)")
            #expect(answer["field"] == "init_images[0]")
        }
        let (status, answer) = try await server.json(.POST, "/txt2img", [
            "prompt": "x", "steps": 2, "width": 64, "height": 64,
            "alwayson_scripts": ["controlnet": ["args": [["image": "inputs/default/../../db/data.mdb.png"]]]],
        ])
        #expect(status == 400)
        #expect(answer["field"] == "alwayson_scripts.controlnet.args[0].image")
        // Signed object URLs cannot climb out either.
        #expect(try await server.request(.GET, "/objects/%2e%2e/url-signing.key?expires=9999999999&sig=00").0 == 403)
    }

    @Test func corruptOversizedAndNonImagesAreRefusedWith400() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nimages:\n  maxPixels: 8192\n")
        defer { server.destroy() }
        let small = try PNGCodec.encode(TestRendering.picture(width: 64, height: 64))
        let big = try PNGCodec.encode(TestRendering.picture(width: 128, height: 65))
        let cases: [(String, Data, String)] = [
            ("corrupt", small.prefix(small.count - 30), "PNG decoding failed"),
            ("oversized", big, "over the limit of 8192 pixels"),
            ("not an image", Data("hello, world".utf8), "not a PNG, JPEG or WebP"),
        ]
        for (name, data, message) in cases {
            let (status, answer) = try await server.json(.POST, "/img2img", ["init_images": [.string(data.base64EncodedString())], "steps": 2, "width": 64, "height": 64])
            #expect(status == 400, "\(name): \(answer)")
            #expect(answer["detail"]?.stringValue?.contains(message) == true, "\(name): \(answer)")
            let (uploadStatus, uploaded) = try await server.upload(data, key: "inputs/default/\(name.replacingOccurrences(of: " ", with: "-")).png")
            #expect(uploadStatus == 400, "\(name): \(uploaded)")
            let (extraStatus, extra) = try await server.json(.POST, "/extra_images", ["image": .string(data.base64EncodedString()), "upscaler_1": "Lanczos"])
            #expect(extraStatus == 400, "\(name): \(extra)")
        }
        #expect(try await server.upload(small, key: "inputs/default/ok.png").0 == 201)
        #expect(try await server.request(.POST, "/objects", body: small, headers: [("Content-Type", "image/png")]).0 == 415)
        let (noFile, _) = try await server.request(
            .POST, "/objects", body: multipart([("image", "x.png", small)]),
            headers: [("Content-Type", "multipart/form-data; boundary=sdbox-test-boundary")]
        )
        #expect(noFile == 400)
        // No task was created for any refused request.
        let (_, listing) = try await server.json(.GET, "/tasks")
        #expect(listing["tasks"]?.arrayValue?.isEmpty == true)
    }
}

@Suite(.serialized, .timeLimit(.minutes(2))) struct ImageOutputEndToEndTests {
    @Test func signedURLsExpireAndRefuseTampering() async throws {
        // Long enough that a machine loaded by the rest of the suite still reads the fresh URL in time.
        let server = try await ServerProcess(config: fastWorkers + "\nurlExpirySeconds: 6\n")
        defer { server.destroy() }
        let (_, answer) = try await server.json(.POST, "/txt2img", ["prompt": "x", "steps": 2, "width": 64, "height": 64])
        let url = try #require(answer["ossUrl"]?.arrayValue?.first?.stringValue)
        #expect(try await server.request(.GET, url).0 == 200)
        let signature = try #require(url.split(separator: "sig=").last)
        let flipped = (signature.first == "0" ? "1" : "0") + signature.dropFirst()
        for tampered in [url.replacingOccurrences(of: String(signature), with: flipped), url.replacingOccurrences(of: "_1.png", with: "_2.png"),
                         url.replacingOccurrences(of: "expires=", with: "expires=1")] {
            let (status, body) = try await server.request(.GET, tampered)
            #expect(status == 403, "\(tampered)")
            #expect(try JSONValue(parsing: body)["error"] == "invalid signature")
        }
        try await Task.sleep(for: .seconds(7))
        let (status, body) = try await server.request(.GET, url)
        #expect(status == 403)
        #expect(try JSONValue(parsing: body)["detail"] == "the URL has expired or was altered")
    }

    @Test func rangesAndEntityTags() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let (_, answer) = try await server.json(.POST, "/txt2img", ["prompt": "x", "steps": 2, "width": 64, "height": 64])
        let url = try #require(answer["ossUrl"]?.arrayValue?.first?.stringValue)
        let (status, headers, png) = try await server.exchange(.GET, url)
        #expect(status == 200)
        #expect(headers.first(name: "Content-Type") == "image/png")
        #expect(headers.first(name: "Accept-Ranges") == "bytes")
        let etag = try #require(headers.first(name: "ETag"))
        let size = png.count

        for (range, slice) in [("bytes=0-9", 0...9), ("bytes=10-", 10...(size - 1)), ("bytes=-16", (size - 16)...(size - 1)), ("bytes=5-999999", 5...(size - 1))] {
            let (status, headers, body) = try await server.exchange(.GET, url, headers: [("Range", range)])
            #expect(status == 206, "\(range)")
            #expect(headers.first(name: "Content-Range") == "bytes \(slice.lowerBound)-\(slice.upperBound)/\(size)", "\(range)")
            #expect(body == png[slice], "\(range)")
        }
        for range in ["bytes=\(size)-", "bytes=9-2", "bytes=abc", "bytes=-0"] {
            let (status, headers, body) = try await server.exchange(.GET, url, headers: [("Range", range)])
            #expect(status == 416, "\(range)")
            #expect(headers.first(name: "Content-Range") == "bytes */\(size)")
            #expect(try JSONValue(parsing: body)["error"] == "range not satisfiable")
        }
        // Several ranges, or another unit, are ignored: the whole object.
        #expect(try await server.exchange(.GET, url, headers: [("Range", "bytes=0-1,4-5")]).2 == png)
        #expect(try await server.exchange(.GET, url, headers: [("Range", "lines=1-2")]).0 == 200)
        // Conditional requests.
        #expect(try await server.exchange(.GET, url, headers: [("If-None-Match", etag)]).0 == 304)
        #expect(try await server.exchange(.GET, url, headers: [("If-None-Match", "\"other\"")]).0 == 200)
        #expect(try await server.exchange(.GET, url, headers: [("Range", "bytes=0-3"), ("If-Range", etag)]).0 == 206)
        #expect(try await server.exchange(.GET, url, headers: [("Range", "bytes=0-3"), ("If-Range", "\"stale\"")]).0 == 200)
    }

    @Test func thumbnailsAreMadeOffTheRequestPathAndOnDemand() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let (_, answer) = try await server.json(.POST, "/txt2img", ["prompt": "owls", "steps": 2, "width": 320, "height": 192, "batch_size": 2])
        let id = try #require(answer["taskId"]?.stringValue)
        let folder = server.dataDirectory + "/objects/thumbnails/default/"
        // Made in the background, without being asked for.
        let deadline = ContinuousClock.now + .seconds(20)
        while !FileManager.default.fileExists(atPath: folder + "\(id)_2.jpg"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(FileManager.default.fileExists(atPath: folder + "\(id)_1.jpg"))
        #expect(FileManager.default.fileExists(atPath: folder + "\(id)_2.jpg"))

        // One made on demand when missing (as for tasks older than thumbnails).
        try FileManager.default.removeItem(atPath: folder + "\(id)_1.jpg")
        let (status, thumbnails) = try await server.json(.GET, "/tasks/\(id)/thumbnails")
        #expect(status == 200)
        let urls = (thumbnails["thumbnails"]?.arrayValue ?? []).compactMap(\.stringValue)
        #expect(urls.count == 2)
        for url in urls {
            let (status, headers, jpeg) = try await server.exchange(.GET, url)
            #expect(status == 200)
            #expect(headers.first(name: "Content-Type") == "image/jpeg")
            #expect(jpeg.starts(with: [0xFF, 0xD8, 0xFF]) && jpeg.suffix(2) == Data([0xFF, 0xD9]))
            let image = try JPEGCodec.decode(jpeg, maxPixels: 1 << 20)
            #expect(image.width == 256 && image.height == 154)
        }
        #expect(try await server.json(.GET, "/tasks/unknown/thumbnails").0 == 404)
    }

    @Test func aFullDiskFailsTheTaskAndWritesNothing() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nimages:\n  minFreeDiskMiB: 1073741824\n")
        defer { server.destroy() }
        let (status, answer) = try await server.json(.POST, "/txt2img", ["prompt": "x", "steps": 2, "width": 64, "height": 64, "batch_size": 3])
        #expect(status == 500)
        #expect(answer["status"] == "failed")
        let id = try #require(answer["taskId"]?.stringValue)
        let (_, result) = try await server.json(.GET, "/tasks/\(id)/result")
        #expect(result["status"] == "failed")
        #expect(result["error"]?.stringValue?.contains("disk full") == true, "\(result)")
        #expect(result["images"] == [] && result["ossUrl"] == [], "no image kept")
        let images = (try? FileManager.default.contentsOfDirectory(atPath: server.dataDirectory + "/objects/images/default")) ?? []
        #expect(images.isEmpty, "\(images)")
        let (uploadStatus, upload) = try await server.upload(try PNGCodec.encode(PixelImage(width: 8, height: 8)), key: "inputs/default/x.png")
        #expect(uploadStatus == 507)
        #expect(upload["error"] == "disk full")
    }
}

@Suite(.serialized, .timeLimit(.minutes(2))) struct PostprocessingEndToEndTests {
    @Test func extraImagesUpscalesThroughTheReferenceWorker() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let (_, png) = try await server.picture(width: 96, height: 64)
        #expect(try await server.upload(png, key: "inputs/default/fox.png").0 == 201)

        // The task API: stored key in, a stored PNG twice the size out, infotext kept.
        let (status, answer) = try await server.json(.POST, "/extra_images", ["image": "inputs/default/fox.png", "upscaler_1": "Lanczos", "upscaling_resize": 2])
        #expect(status == 200, "\(answer)")
        #expect(answer["status"] == "succeeded")
        let id = try #require(answer["taskId"]?.stringValue)
        let (_, upscaled) = try await server.request(.GET, try #require(answer["ossUrl"]?.arrayValue?.first?.stringValue))
        let image = try PNGCodec.decode(upscaled)
        #expect(image.width == 192 && image.height == 128)
        let text = PNGTextChunks.read(from: upscaled)
        #expect(text["parameters"] == PNGTextChunks.read(from: png)["parameters"])
        #expect(text["postprocessing"] == "Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos")
        // It looks like the input, enlarged.
        let original = try PNGCodec.decode(png).resampled(width: 192, height: 128, filter: .lanczos3)
        #expect(image == original)
        let (_, result) = try await server.json(.GET, "/tasks/\(id)/result")
        #expect(result["images"] == [.string("images/default/\(id)_1.png")])
        #expect(result["info"]?["html_info"] == "<p>Postprocess upscale by: 2.0, Postprocess upscaler: Lanczos</p>")
        #expect(result["parameters"]?["image"] == nil)
        #expect(result["parameters"]?["upscaling_resize"] == 2)

        // Asynchronously, by base64, to a size.
        let (_, queued) = try await server.json(
            .POST, "/extra_images",
            ["image": .string(png.base64EncodedString()), "upscaler_1": "Nearest", "resize_mode": 1, "upscaling_resize_w": 150, "upscaling_resize_h": 150],
            headers: [("Request-Type", "async")]
        )
        let done = try await server.waitForTask(try #require(queued["taskId"]?.stringValue))
        #expect(done["status"] == "succeeded")
        let (_, cropped) = try await server.request(.GET, try #require(done["ossUrl"]?.arrayValue?.first?.stringValue))
        let croppedImage = try PNGCodec.decode(cropped)
        #expect(croppedImage.width == 150 && croppedImage.height == 150)

        // A1111's shapes.
        let (singleStatus, single) = try await server.json(.POST, "/sdapi/v1/extra-single-image", ["image": "inputs/default/fox.png", "upscaler_1": "Lanczos", "upscaling_resize": 1.5])
        #expect(singleStatus == 200, "\(single)")
        #expect(single["html_info"] == "<p>Postprocess upscale by: 1.5, Postprocess upscaler: Lanczos</p>")
        let singleBase64 = try #require(single["image"]?.stringValue)
        let singlePNG = try #require(Data(base64Encoded: singleBase64))
        #expect(try PNGCodec.decode(singlePNG).width == 144)
        let (batchStatus, batch) = try await server.json(.POST, "/sdapi/v1/extra-batch-images", [
            "imageList": [["data": "inputs/default/fox.png", "name": "a.png"], ["data": .string(png.base64EncodedString()), "name": "b.png"]],
            "upscaler_1": "Nearest", "upscaling_resize": 3,
        ])
        #expect(batchStatus == 200, "\(batch)")
        let images = try #require(batch["images"]?.arrayValue)
        #expect(images.count == 2)
        for encoded in images {
            let data = try #require(encoded.stringValue.flatMap { Data(base64Encoded: $0) })
            #expect(try PNGCodec.decode(data).width == 288)
        }

        // Outputs over the limits, and unknown upscalers, are refused.
        let (tooBig, refusal) = try await server.json(.POST, "/extra_images", ["image": "inputs/default/fox.png", "upscaler_1": "Lanczos", "resize_mode": 1, "upscaling_resize_w": 4096, "upscaling_resize_h": 4096, "upscaling_crop": false])
        #expect(tooBig == 400, "\(refusal)")
        #expect(refusal["field"] == "upscaling_resize_w")
        let (unknown, failure) = try await server.json(.POST, "/sdapi/v1/extra-single-image", ["image": "inputs/default/fox.png", "upscaler_1": "SwinIR 4x"])
        #expect(unknown == 500)
        #expect(failure["detail"]?.stringValue?.contains("could not find upscaler named SwinIR 4x") == true, "\(failure)")
    }
}

/// Test pictures for end-to-end tests.
enum TestRendering {
    /// A picture with varied pixels (so PNG compresses it only so far).
    static func picture(width: Int, height: Int) -> PixelImage {
        var image = PixelImage(width: width, height: height)
        for index in image.pixels.indices { image.pixels[index] = UInt8(truncatingIfNeeded: index &* 2_654_435_761 >> 7) }
        return image
    }
}

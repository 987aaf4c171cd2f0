import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDBoxCore
import Testing

/// Model management through the real server: streamed uploads, validation, registration in place, the
/// status lifecycle, listings, deletion, and uploads cut off half way.
@Suite(.serialized, .timeLimit(.minutes(2))) struct ModelManagementTests {
    /// A valid safetensors file of about `size` bytes (one tensor of zeros).
    static func safetensors(bytes size: Int) -> Data {
        let count = max(1, size / 4)
        return safetensors(tensor: "w", shape: [count])
    }

    /// A valid safetensors file holding one F32 tensor of zeros of `shape`.
    static func safetensors(tensor name: String, shape: [Int]) -> Data {
        let bytes = shape.reduce(4, *)
        let header = Data(#"{"\#(name)":{"dtype":"F32","shape":\#(shape),"data_offsets":[0,\#(bytes)]}}"#.utf8)
        var file = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.append(contentsOf: $0) }
        return file + header + Data(count: bytes)
    }

    func upload(_ server: ServerProcess, _ path: String, _ data: Data) async throws -> (Int, JSONValue) {
        let (status, body) = try await server.request(.PUT, path, body: data)
        return (status, (try? JSONValue(parsing: body)) ?? .null)
    }

    func files(_ server: ServerProcess, _ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: server.dataDirectory + "/models/" + folder)) ?? []).sorted()
    }

    @Test func uploadsAreStreamedHashedAndListed() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let file = Self.safetensors(bytes: 3 << 20)
        let (status, record) = try await upload(server, "/admin/models/stableDiffusion/big.safetensors", file)
        #expect(status == 201, "\(record)")
        let copy = server.dataDirectory + "/copy.safetensors"
        try file.write(to: URL(fileURLWithPath: copy))
        #expect(record["etag"]?.stringValue == (try Checkpoint.sha256(ofFileAt: copy)))
        #expect(record["status"] == "unloaded")
        #expect(record["size"]?.integerValue == Int64(file.count))
        #expect(record["shortHash"]?.stringValue?.count == 10)

        // It is usable at once, by name without extension.
        let (generated, answer) = try await server.json(.POST, "/txt2img", ["stable_diffusion_model": "big", "steps": 1, "width": 64, "height": 64])
        #expect(generated == 200, "\(answer)")
        let (_, listed) = try await server.json(.GET, "/models?type=stableDiffusion&status=loaded")
        #expect(listed.arrayValue?.map { $0["name"] } == ["big.safetensors"])

        // Same name again: 409, unless overwrite.
        let (again, _) = try await upload(server, "/admin/models/stableDiffusion/big.safetensors", file)
        #expect(again == 409)
        let (replaced, _) = try await upload(server, "/admin/models/stableDiffusion/big.safetensors?overwrite=true", Self.safetensors(bytes: 1000))
        #expect(replaced == 201)

        // Every type goes to its A1111 folder and shows in the A1111 listings.
        for (type, folder) in [("sdVae", "VAE"), ("lora", "Lora"), ("controlNet", "ControlNet"), ("embedding", "embeddings"), ("upscaler", "ESRGAN")] {
            let (created, _) = try await upload(server, "/admin/models/\(type)/\(type)-one.safetensors", Self.safetensors(bytes: 100))
            #expect(created == 201)
            #expect(files(server, folder) == ["\(type)-one.safetensors"])
        }
        #expect(try await server.json(.GET, "/sdapi/v1/sd-vae").1.arrayValue?.first?["model_name"] == "sdVae-one.safetensors")
        #expect(try await server.json(.GET, "/sdapi/v1/loras").1.arrayValue?.first?["name"] == "lora-one")
        #expect(try await server.json(.GET, "/sdapi/v1/embeddings").1["loaded"]?["embedding-one"] != nil)
        #expect(try await server.json(.GET, "/sdapi/v1/upscalers").1.arrayValue?.contains { $0["name"] == "upscaler-one" } == true)

        // A request naming a VAE that is not registered is refused, naming it; one naming a LoRA the box
        // lacks is made without it, as A1111 makes it, and its info says so.
        let (badVAE, vaeAnswer) = try await server.json(.POST, "/txt2img", ["sd_vae": "missing.safetensors", "steps": 1, "width": 64, "height": 64])
        #expect(badVAE == 400)
        #expect(vaeAnswer["field"] == "sd_vae")
        let (missingLora, loraAnswer) = try await server.json(.POST, "/txt2img", ["prompt": "x <lora:ghost:0.7>", "steps": 1, "width": 64, "height": 64])
        #expect(missingLora == 200 && loraAnswer["status"] == "succeeded", "\(loraAnswer)")
        let loraInfo = try await server.json(.GET, "/tasks/\(loraAnswer["taskId"]?.stringValue ?? "")/result").1["info"]
        #expect(loraInfo?["lorasNotFound"] == ["ghost"] && loraInfo?["comments"]?.stringValue?.contains("Networks not found: ghost") == true)
        #expect(loraInfo?["prompt"]?.stringValue?.contains("<lora:ghost:0.7>") == true, "the prompt is kept as sent")
        let (goodLora, _) = try await server.json(
            .POST, "/txt2img", ["prompt": "x <lora:lora-one:0.7>", "sd_vae": "sdVae-one", "steps": 1, "width": 64, "height": 64]
        )
        #expect(goodLora == 200)
    }

    @Test func badUploadsAreRefusedAndLeaveNothing() async throws {
        let server = try await ServerProcess(config: fastWorkers + "\nmodels:\n  maxUploadBytes: 100000\n")
        defer { server.destroy() }
        let before = files(server, "Stable-diffusion")
        let (badHeader, badHeaderAnswer) = try await upload(server, "/admin/models/stableDiffusion/bad.safetensors", Data(repeating: 7, count: 5000))
        #expect(badHeader == 400)
        #expect(badHeaderAnswer["error"] == "invalid model file")
        for name in ["..%2F..%2Fetc%2Fevil.safetensors", ".hidden.safetensors", "notes.txt", "a%00b.safetensors"] {
            let (status, answer) = try await upload(server, "/admin/models/stableDiffusion/\(name)", Self.safetensors(bytes: 100))
            #expect(status == 400 || status == 404, "\(name): \(answer)")
        }
        let (unknownType, _) = try await upload(server, "/admin/models/hypernetwork/x.safetensors", Self.safetensors(bytes: 100))
        #expect(unknownType == 400)
        let (tooBig, tooBigAnswer) = try await upload(server, "/admin/models/stableDiffusion/huge.safetensors", Self.safetensors(bytes: 200_000))
        #expect(tooBig == 413, "\(tooBigAnswer)")
        #expect(files(server, "Stable-diffusion") == before, "no half files, no temporary files")
        #expect(try await server.json(.GET, "/models").1.arrayValue?.count == before.count, "no records")
    }

    @Test func anUploadCutOffHalfWayLeavesNoFileAndNoRecord() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let before = files(server, "Stable-diffusion")
        let file = Self.safetensors(bytes: 8 << 20)
        struct CutOff: Error {}
        let half = file.prefix(file.count / 2)
        var request = HTTPClientRequest(url: server.baseURL + "/admin/models/stableDiffusion/cut.safetensors")
        request.method = .PUT
        let chunks = stride(from: 0, to: half.count, by: 256 << 10).map { ByteBuffer(bytes: half[$0..<min($0 + (256 << 10), half.count)]) }
        request.body = .stream(
            AsyncThrowingStream<ByteBuffer, any Error> { continuation in
                for chunk in chunks { continuation.yield(chunk) }
                continuation.finish(throwing: CutOff())
            },
            length: .known(Int64(file.count))
        )
        _ = try? await HTTPClient.shared.execute(request, timeout: .seconds(10))
        // The server notices the connection closing and drops what it received (within seconds on a machine
        // loaded by the rest of the suite).
        for _ in 0..<800 where !server.log.contains("model upload failed; nothing kept") {
            try await Task.sleep(for: .milliseconds(25))
        }
        #expect(server.log.contains("model upload failed; nothing kept"), "the server received part of the file")
        #expect(files(server, "Stable-diffusion") == before)
        #expect(try await server.json(.GET, "/models").1.arrayValue?.contains { $0["name"] == "cut.safetensors" } == false)
        // The name is free again.
        let (retry, _) = try await upload(server, "/admin/models/stableDiffusion/cut.safetensors", Self.safetensors(bytes: 1000))
        #expect(retry == 201)
    }

    @Test func anUploadSurvivesListingsWhileItRuns() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        let file = Self.safetensors(bytes: 4 << 20)
        var request = HTTPClientRequest(url: server.baseURL + "/admin/models/stableDiffusion/slow.safetensors")
        request.method = .PUT
        let (body, sender) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        request.body = .stream(body, length: .known(Int64(file.count)))
        async let answer = HTTPClient.shared.execute(request, timeout: .seconds(30))
        sender.yield(ByteBuffer(bytes: file.prefix(file.count / 2)))
        // The first half sits in a temporary file while the models are listed (as the Models page does).
        for _ in 0..<200 where !files(server, "Stable-diffusion").contains(where: { $0.hasPrefix(".upload-") }) {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(try await server.json(.GET, "/models").0 == 200)
        #expect(files(server, "Stable-diffusion").contains { $0.hasPrefix(".upload-") }, "the listing left the upload's file alone")
        sender.yield(ByteBuffer(bytes: file.suffix(from: file.count / 2)))
        sender.finish()
        let response = try await answer
        let record = try JSONValue(parsing: Data(try await response.body.collect(upTo: 1 << 20).readableBytesView))
        #expect(response.status.code == 201, "\(record)")
        #expect(record["size"]?.integerValue == Int64(file.count))
    }

    @Test func concurrentUploadsMultipartAndRegistration() async throws {
        let server = try await ServerProcess(config: fastWorkers)
        defer { server.destroy() }
        async let first = upload(server, "/admin/models/stableDiffusion/one.safetensors", Self.safetensors(bytes: 2 << 20))
        async let second = upload(server, "/admin/models/stableDiffusion/two.safetensors", Self.safetensors(bytes: 2 << 20))
        let results = try await [first.0, second.0]
        #expect(results == [201, 201])

        // A browser's multipart form.
        let boundary = "----sdbox-test-boundary"
        var form = Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nlora\r\n".utf8)
        form.append(Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"style.safetensors\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8))
        form.append(Self.safetensors(bytes: 300_000))
        form.append(Data("\r\n--\(boundary)--\r\n".utf8))
        let (multipart, body) = try await server.request(.POST, "/admin/models", body: form, headers: [("Content-Type", "multipart/form-data; boundary=\(boundary)")])
        #expect(multipart == 201, "\(String(decoding: body, as: UTF8.self))")
        #expect(files(server, "Lora") == ["style.safetensors"])
        let (garbled, _) = try await server.request(.POST, "/admin/models", body: Data("nonsense".utf8), headers: [("Content-Type", "multipart/form-data; boundary=x")])
        #expect(garbled == 400)

        // Registration in place: a file elsewhere on the box, hashed in the background.
        let outside = server.dataDirectory + "/elsewhere.safetensors"
        try Self.safetensors(bytes: 5000).write(to: URL(fileURLWithPath: outside))
        let (registered, record) = try await server.json(.POST, "/admin/models/register", ["type": "stableDiffusion", "path": .string(outside)])
        #expect(registered == 201, "\(record)")
        #expect(record["status"] == "registering")
        var status = record["status"]
        for _ in 0..<100 where status == "registering" {
            try await Task.sleep(for: .milliseconds(30))
            status = try await server.json(.GET, "/models").1.arrayValue?.first { $0["name"] == "elsewhere.safetensors" }?["status"]
        }
        #expect(status == "unloaded")
        let (missing, _) = try await server.json(.POST, "/admin/models/register", ["path": "/no/such/file.safetensors"])
        #expect(missing == 400)
        let (relative, _) = try await server.json(.POST, "/admin/models/register", ["path": "relative.safetensors"])
        #expect(relative == 400)
    }

    @Test func deletionWaitsForTasksUnlessForced() async throws {
        let server = try await ServerProcess(config: pacedWorkers)
        defer { server.destroy() }
        let (accepted, task) = try await server.json(
            .POST, "/txt2img", ["steps": 60, "width": 512, "height": 512], headers: [("Request-Type", "async")]
        )
        #expect(accepted == 200)
        let id = try #require(task["taskId"]?.stringValue)
        let (refused, refusal) = try await server.json(.DELETE, "/admin/models/stableDiffusion/demo.safetensors")
        #expect(refused == 409, "\(refusal)")
        let (deleted, _) = try await server.json(.DELETE, "/admin/models/stableDiffusion/demo.safetensors?force=true")
        #expect(deleted == 200)
        let result = try await server.waitForTask(id)
        #expect(result["status"] == "failed")
        #expect(result["error"]?.stringValue?.contains("was deleted") == true)
        #expect(files(server, "Stable-diffusion").isEmpty, "the file went with the record")
        #expect(try await server.json(.GET, "/models").1.arrayValue?.isEmpty == true)
        let (gone, _) = try await server.json(.DELETE, "/admin/models/stableDiffusion/demo.safetensors")
        #expect(gone == 404)
    }
}

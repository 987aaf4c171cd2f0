import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// Two boxes sharing a folder (`sharedDir`), as a fleet's boxes share an NFS mount: a model uploaded to one
/// is served by the other, an image made by one is served by the other under the same signed URL, and
/// each names itself in `/workers` and `/metrics`.
@Suite(.serialized, .timeLimit(.minutes(2))) struct SharedFolderTests {
    @Test func twoBoxesShareModelsImagesAndSecrets() async throws {
        let shared = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-shared-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: shared) }
        func config(_ node: String) -> String {
            """
            sharedDir: \(shared)
            node: {name: \(node)}
            workers:
              reference: {stepMilliseconds: 5, minimumStepMilliseconds: 5}
            """
        }
        let boxA = try await ServerProcess(config: config("box-a"))
        defer { boxA.destroy() }
        // An upload A has under way, and one a crash left two days ago: B, starting, removes only the old one.
        let checkpoints = shared + "/models/Stable-diffusion/"
        for name in [".upload-running-big.safetensors", ".upload-old-big.safetensors"] {
            try Data(count: 1024).write(to: URL(fileURLWithPath: checkpoints + name))
        }
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -2 * 86400)], ofItemAtPath: checkpoints + ".upload-old-big.safetensors")
        let boxB = try await ServerProcess(config: config("box-b"))
        defer { boxB.destroy() }
        #expect(FileManager.default.fileExists(atPath: checkpoints + ".upload-running-big.safetensors"), "another box's upload is left alone")
        #expect(!FileManager.default.fileExists(atPath: checkpoints + ".upload-old-big.safetensors"), "a day-old leftover is removed")
        #expect(try await boxA.json(.GET, "/workers").1["node"] == "box-a")
        #expect(try await boxB.json(.GET, "/workers").1["node"] == "box-b")
        #expect(String(decoding: try await boxB.request(.GET, "/metrics").1, as: UTF8.self).contains(#"sdbox_node_info{node="box-b"} 1"#))

        // Uploaded to A, generated with on B.
        let checkpoint = ModelManagementTests.safetensors(bytes: 64 << 10)
        #expect(try await boxA.request(.PUT, "/admin/models/stableDiffusion/shared-one.safetensors", body: checkpoint).0 == 201)
        #expect(FileManager.default.contents(atPath: shared + "/models/Stable-diffusion/shared-one.safetensors") == checkpoint)
        let (status, answer) = try await boxB.json(.POST, "/txt2img", ["stable_diffusion_model": "shared-one", "prompt": "p", "steps": 2, "width": 64, "height": 64])
        #expect(status == 200 && answer["status"] == "succeeded", "\(answer)")

        // B's image, under B's signed URL, from A: the objects and the signing secret are shared.
        let url = try #require(answer["ossUrl"]?.arrayValue?.first?.stringValue)
        let path = try #require(URLComponents(string: url).map { $0.percentEncodedPath + "?" + ($0.percentEncodedQuery ?? "") })
        let fromB = try await boxB.request(.GET, path)
        let fromA = try await boxA.request(.GET, path)
        #expect(fromB.0 == 200 && fromA.0 == 200 && fromA.1 == fromB.1 && !fromA.1.isEmpty)
        #expect(FileManager.default.fileExists(atPath: shared + "/url-signing.key") && FileManager.default.fileExists(atPath: shared + "/objects"))
        for box in [boxA, boxB] {
            #expect(!FileManager.default.fileExists(atPath: box.dataDirectory + "/objects"), "no objects under \(box.dataDirectory)")
            #expect(FileManager.default.fileExists(atPath: box.dataDirectory + "/db"), "the database stays the box's own")
        }
        // The doctor checks the shared folder.
        let doctor = try await runSDBox(["doctor", "--config", boxA.configPath, "--data-dir", boxA.dataDirectory])
        #expect(doctor.output.contains("shared folder") && doctor.output.contains(shared), "\(doctor.output)")
    }
}

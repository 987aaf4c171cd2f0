import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SDBoxCore
import Testing

/// The reference worker behaves as a real one does where the scheduler relies on it: it parks its
/// checkpoint in system RAM and brings it back as A1111's `/sdapi/v1/unload-checkpoint` and
/// `/sdapi/v1/reload-checkpoint` do, and a generation on a parked checkpoint brings it back first.
@Suite(.timeLimit(.minutes(2))) struct ReferenceWorkerTests {
    @Test func parksItsCheckpointAndBringsItBack() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-worker-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: folder + "/demo.safetensors"))
        let (pid, port) = try await spawnOnFreePort(output: folder + "/worker.log") { port in
            [ServerProcess.binary, "worker", "--port", "\(port)", "--checkpoint", folder + "/demo.safetensors", "--start-ms", "50", "--reload-ms", "50",
             "--min-step-ms", "1", "--step-ms", "2", "--gpu-memory-mib", "3000"]
        }
        defer { killAndReap(pid) }
        func call(_ method: HTTPMethod, _ path: String, _ body: JSONValue? = nil) async throws -> (Int, JSONValue) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
            request.method = method
            if let body { request.body = .bytes(ByteBuffer(bytes: try body.encoded())) }
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            return (Int(response.status.code), try JSONValue(parsing: Data(try await response.body.collect(upTo: 16 << 20).readableBytesView)))
        }
        #expect(try await call(.GET, "/internal/ping").1["loaded"] == true)

        #expect(try await call(.GET, "/sdapi/v1/memory").1["cuda"]?["reserved"]?["current"] == .integer(3000 << 20))
        #expect(try await call(.POST, "/sdapi/v1/unload-checkpoint").0 == 200)
        #expect(try await call(.GET, "/internal/ping").1["loaded"] == false)
        #expect(try await call(.GET, "/sdapi/v1/memory").1["cuda"]?["reserved"]?["current"] == 0, "parking frees the GPU memory")
        // A generation on a parked checkpoint brings it back first.
        let (generated, answer) = try await call(.POST, "/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "width": 64, "height": 64])
        #expect(generated == 200 && answer["images"]?.arrayValue?.count == 1)
        #expect(try await call(.GET, "/internal/ping").1["loaded"] == true)

        #expect(try await call(.POST, "/sdapi/v1/unload-checkpoint").0 == 200)
        #expect(try await call(.POST, "/sdapi/v1/reload-checkpoint").0 == 200)
        #expect(try await call(.GET, "/internal/ping").1["loaded"] == true)
        #expect(try await call(.POST, "/sdapi/v1/reload-checkpoint").0 == 200, "reloading a loaded checkpoint does nothing")
    }
}

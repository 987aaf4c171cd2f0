import AsyncHTTPClient
import Foundation
import ImageCodec
import NIOCore
import NIOHTTP1
import SDBoxCore
import Testing

/// A small tmpfs mounted for one test and unmounted after it (mounting needs root, as `scripts/test` runs).
struct TmpfsMount {
    let path: String

    static var isPossible: Bool { getuid() == 0 }

    init(sizeMiB: Int) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-tmpfs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        guard mount("tmpfs", path, "tmpfs", 0, "size=\(sizeMiB)m,mode=0755") == 0 else {
            throw TestFailure("mount tmpfs at \(path): \(String(cString: strerror(errno)))")
        }
    }

    func unmount() {
        umount2(path, Int32(MNT_DETACH))
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Writes a file until the file system refuses more, byte by byte at the end.
    func fill(_ name: String) throws {
        // Close-on-exec: a process another test starts meanwhile must not keep the file (and its space).
        let descriptor = open(path + "/" + name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw TestFailure("open filler: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        for chunk in [1 << 20, 4096, 1] {
            let bytes = [UInt8](repeating: 0x5A, count: chunk)
            while write(descriptor, bytes, chunk) == chunk {}
        }
        guard errno == ENOSPC else { throw TestFailure("filler stopped by \(String(cString: strerror(errno)))") }
    }

    var freeBytes: Int64 {
        var info = statvfs()
        statvfs(path, &info)
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }
}

/// A data folder on a disk that really fills up: refusals are clear JSON errors, nothing already stored is
/// harmed, and sdbox works again when space returns, also after a restart.
@Suite(.serialized, .timeLimit(.minutes(3)), .enabled(if: TmpfsMount.isPossible, "mounting a tmpfs needs root"))
struct DiskFullTests {
    let generation: JSONValue = ["prompt": "disk", "steps": 2, "width": 64, "height": 64]

    @Test func aFullDiskRefusesCleanlyAndRecovers() async throws {
        let disk = try TmpfsMount(sizeMiB: 32)
        defer { disk.unmount() }
        // No reserve: the disk itself must say no.
        let server = try await ServerProcess(config: fastWorkers + "\nimages:\n  minFreeDiskMiB: 0\n", dataDirectory: disk.path + "/data")
        defer { server.destroy() }
        let (firstStatus, first) = try await server.json(.POST, "/txt2img", generation)
        #expect(firstStatus == 200, "\(first)")
        let firstID = try #require(first["taskId"]?.stringValue)
        let firstImage = try #require(first["ossUrl"]?.arrayValue?.first?.stringValue)

        try disk.fill("filler")
        #expect(disk.freeBytes == 0)
        // Generations, async and sync, an image upload and a model upload: each refused or failed with a
        // reason, never a hang or a dropped connection.
        var failedTasks: [String] = []
        for type in ["sync", "async", "sync"] {
            let (status, answer) = try await server.json(.POST, "/txt2img", generation, headers: [("Request-Type", type)])
            if status == 507 {
                #expect(answer["error"] == "disk full", "\(answer)")
            } else {
                let id = try #require(answer["taskId"]?.stringValue, "\(status) \(answer)")
                let result = try await server.waitForTask(id)
                #expect(result["status"] == "failed", "\(result)")
                #expect(result["error"]?.stringValue?.contains("disk full") == true, "\(result)")
                failedTasks.append(id)
            }
        }
        let png = try PNGCodec.encode(PixelImage(width: 8, height: 8))
        let (uploadStatus, upload) = try await server.upload(png, key: "inputs/default/x.png")
        #expect(uploadStatus == 507 && upload["error"] == "disk full", "\(upload)")
        // A model streamed without a length runs into the full disk while it is written.
        let (modelStatus, model) = try await server.streamedUpload("/admin/models/lora/full.safetensors", ModelManagementTests.safetensors(bytes: 1 << 20))
        #expect(modelStatus == 507, "\(model)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: server.dataDirectory + "/models/Lora").isEmpty)

        // What was stored before is unharmed.
        #expect(try await server.request(.GET, "/healthz").0 == 200)
        let (_, before) = try await server.json(.GET, "/tasks/\(firstID)/result")
        #expect(before["status"] == "succeeded")
        #expect(try await server.request(.GET, firstImage).0 == 200)

        // Space returns: the same requests succeed.
        try FileManager.default.removeItem(atPath: disk.path + "/filler")
        let (againStatus, again) = try await server.json(.POST, "/txt2img", generation)
        #expect(againStatus == 200 && again["status"] == "succeeded", "\(again)")
        #expect(try await server.upload(png, key: "inputs/default/x.png").0 == 201)
        #expect(try await server.streamedUpload("/admin/models/lora/full.safetensors", ModelManagementTests.safetensors(bytes: 1 << 20)).0 == 201)

        // The database is whole after a kill and restart: every task is there, in the state it was answered with.
        await server.stop(signal: SIGKILL)
        try await server.start()
        #expect(try await server.json(.GET, "/tasks/\(firstID)/result").1["status"] == "succeeded")
        for id in failedTasks {
            #expect(try await server.json(.GET, "/tasks/\(id)/result").1["status"] == "failed")
        }
        let (_, listed) = try await server.json(.GET, "/tasks?limit=50")
        #expect(listed["tasks"]?.arrayValue?.count == 2 + failedTasks.count, "\(listed)")
    }

    /// A task whose images meet a full disk fails with that reason, once its outcome can be written; its
    /// images are not half written; the sync caller waiting for it gets that answer.
    @Test func aTaskRunningWhenTheDiskFillsFailsWithTheReason() async throws {
        let disk = try TmpfsMount(sizeMiB: 32)
        defer { disk.unmount() }
        let server = try await ServerProcess(config: pacedWorkers + "\nimages:\n  minFreeDiskMiB: 0\n", dataDirectory: disk.path + "/data")
        defer { server.destroy() }
        // 150 steps of 20 ms: the disk is full long before the worker is done.
        async let answer = server.json(.POST, "/txt2img", ["prompt": "disk", "steps": 150, "width": 512, "height": 512, "batch_size": 2])
        var id: String?
        while id == nil {
            id = try await server.json(.GET, "/tasks?status=running").1["tasks"]?.arrayValue?.first?["taskId"]?.stringValue
            try await Task.sleep(for: .milliseconds(20))
        }
        try disk.fill("filler")
        // Space comes back once the task's images were refused: its outcome waits in memory
        // (sdbox_task_changes_waiting_for_disk), or LMDB found room in its own free pages and recorded it.
        while true {
            let metrics = OperationsTests.samples(String(decoding: try await server.request(.GET, "/metrics").1, as: UTF8.self))
            if metrics["sdbox_task_changes_waiting_for_disk"] ?? 0 >= 1 { break }
            if try await server.json(.GET, "/tasks/\(try #require(id))").1["status"] == "failed" { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        try FileManager.default.removeItem(atPath: disk.path + "/filler")
        let (status, final) = try await answer
        #expect(status == 500 && final["status"] == "failed" && final["taskId"]?.stringValue == id, "\(final)")
        #expect(final["detail"]?.stringValue?.contains("disk full") == true, "\(final)")
        let images = (try? FileManager.default.contentsOfDirectory(atPath: server.dataDirectory + "/objects/images/default")) ?? []
        #expect(images.isEmpty, "\(images)")
        let metrics = OperationsTests.samples(String(decoding: try await server.request(.GET, "/metrics").1, as: UTF8.self))
        #expect(metrics["sdbox_task_changes_waiting_for_disk"] ?? 0 == 0)
        let (againStatus, again) = try await server.json(.POST, "/txt2img", generation)
        #expect(againStatus == 200 && again["status"] == "succeeded", "\(again)")
    }

    /// sdbox killed under a running task and started again on a full disk starts, and loses nothing: the
    /// task runs again, once its record can be written, and ends (succeeded, or failed with the disk's
    /// reason if its images met the full disk).
    @Test func aRestartOnAFullDiskLosesNothing() async throws {
        let disk = try TmpfsMount(sizeMiB: 32)
        defer { disk.unmount() }
        let server = try await ServerProcess(config: pacedWorkers + "\nimages:\n  minFreeDiskMiB: 0\n", dataDirectory: disk.path + "/data")
        defer { server.destroy() }
        let (_, submitted) = try await server.json(.POST, "/txt2img", ["prompt": "disk", "steps": 150, "width": 512, "height": 512], headers: [("Request-Type", "async")])
        let id = try #require(submitted["taskId"]?.stringValue)
        while try await server.json(.GET, "/tasks/\(id)").1["status"] != "running" {
            try await Task.sleep(for: .milliseconds(20))
        }
        await server.stop(signal: SIGKILL)
        try disk.fill("filler")
        try await server.start()
        #expect(try await server.json(.GET, "/tasks/\(id)").0 == 200)
        try FileManager.default.removeItem(atPath: disk.path + "/filler")
        let result = try await server.waitForTask(id)
        let status = result["status"]?.stringValue
        #expect(status == "succeeded" || (status == "failed" && result["error"]?.stringValue?.contains("disk full") == true), "\(result)")
        #expect(try await server.json(.GET, "/tasks/\(id)").1["attempts"] == 2)
        #expect(try await server.json(.GET, "/readyz").0 == 200)
    }
}

extension ServerProcess {
    /// PUTs `data` with chunked transfer encoding (no Content-Length) and reads the JSON answer.
    func streamedUpload(_ path: String, _ data: Data) async throws -> (Int, JSONValue) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .PUT
        let chunks = stride(from: 0, to: data.count, by: 64 << 10).map { ByteBuffer(bytes: data[$0..<min($0 + (64 << 10), data.count)]) }
        let stream = AsyncStream<ByteBuffer> { continuation in
            for chunk in chunks { continuation.yield(chunk) }
            continuation.finish()
        }
        request.body = .stream(stream, length: .unknown)
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 1 << 20)
        return (Int(response.status.code), (try? JSONValue(parsing: body.readableBytesView)) ?? .null)
    }
}

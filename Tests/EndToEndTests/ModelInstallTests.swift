import Crypto
import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// A local HTTPS server standing for the sites models are installed from (`Tests/fixtures/model_site.py`):
/// plain file hosting, Hugging Face and Civitai, with a dropped connection, throttling and a request log.
/// Each site has an address of its own, as on the internet: Hugging Face 127.0.0.1, Civitai 127.0.0.3, and
/// the CDN both redirect their downloads to 127.0.0.2 (or, with `publicAddress`, one public-looking
/// address for all).
final class ModelSite: @unchecked Sendable {
    // Safety: set once in init; the server process is only stopped by `stop()`.
    let folder: String
    let port: Int
    let pid: pid_t
    /// The address the site is reached at: 127.0.0.1, or with `publicAddress` one of the box's own
    /// addresses that is not private (so that sdbox's check of private addresses lets it through).
    let host: String
    /// Hugging Face's address, and the plain files'.
    var base: String { "https://\(host):\(port)" }
    var civitai: String { "https://\(host == "127.0.0.1" ? "127.0.0.3" : host):\(port)" }
    var certificate: String { folder + "/cert.pem" }

    init(publicAddress: Bool = false) async throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-site-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder + "/files", withIntermediateDirectories: true)
        host = publicAddress ? try await Self.publicAddress() : "127.0.0.1"
        let made = try await runProgram([
            "/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=model-site", "-days", "1",
            "-addext", "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,IP:\(host)", "-keyout", folder + "/key.pem", "-out", folder + "/cert.pem",
        ])
        guard made.status == 0 else { throw TestFailure("openssl: \(made.output)") }
        port = try #require(FreePort.allocate())
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fixtures/model_site.py").path
        pid = try spawn(
            ["/usr/bin/python3", script, "--root", folder, "--port", "\(port)", "--cdn", "https://\(host == "127.0.0.1" ? "127.0.0.2" : host):\(port)", "--cert", folder + "/cert.pem", "--key", folder + "/key.pem"],
            output: folder + "/site.log"
        )
        for _ in 0..<100 where await !ServerProcess.listens(pid: pid, port: port) { try await Task.sleep(for: .milliseconds(50)) }
    }

    func stop() {
        killAndReap(pid)
        try? FileManager.default.removeItem(atPath: folder)
    }

    func add(_ name: String, _ data: Data) throws {
        try data.write(to: URL(fileURLWithPath: folder + "/files/" + name))
    }

    func set(_ name: String, _ text: String) throws {
        try text.write(toFile: folder + "/" + name, atomically: true, encoding: .utf8)
    }

    /// Every request the site has had.
    func log() async throws -> [JSONValue] {
        let answer = try await runProgram(["/usr/bin/curl", "-sk", "https://127.0.0.1:\(port)/log"])
        return try JSONValue(parsing: Data(answer.output.utf8)).arrayValue ?? []
    }

    /// One of this machine's IPv4 addresses outside the private, loopback and other reserved ranges sdbox
    /// refuses: the address of its default route when it is one (192.0.2.x on the CI machines), else a
    /// documentation address added to the loopback interface (the tests run as root).
    static func publicAddress() async throws -> String {
        let route = try await runProgram(["/usr/sbin/ip", "-4", "-o", "route", "get", "1.1.1.1"])
        let words = route.output.split(separator: " ").map(String.init)
        if let index = words.firstIndex(of: "src"), index + 1 < words.count, isPublic(words[index + 1]) { return words[index + 1] }
        let added = "203.0.113.77"
        _ = try await runProgram(["/usr/sbin/ip", "addr", "add", added + "/32", "dev", "lo"])
        return added
    }

    static func isPublic(_ address: String) -> Bool {
        let bytes = address.split(separator: ".").compactMap { Int($0) }
        guard bytes.count == 4 else { return false }
        switch (bytes[0], bytes[1]) {
        case (0, _), (10, _), (127, _), (169, 254), (172, 16...31), (192, 168), (100, 64...127), (198, 18...19), (224...255, _): return false
        default: return true
        }
    }
}

/// Installs from links through the real server, against the local stand-in for the sites: plain HTTPS,
/// Hugging Face (token to the site only, the published sha256 checked), Civitai (API, type, token), a
/// dropped connection resumed with Range, a restart mid-download, cancelling, a wrong hash, a file that is
/// not a model, a redirect to a private address, and files too large.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ModelInstallTests {
    static let file = ModelManagementTests.safetensors(bytes: 2 << 20)
    static var fileSHA256: String { SHA256.hash(data: file).hexString }

    func config(_ site: ModelSite, extra: String = "") -> String {
        """
        models:
          allowPrivateNetworks: true
          caCertificateFile: \(site.certificate)
          huggingFaceURL: \(site.base)
          civitaiURL: \(site.civitai)
          huggingFaceToken: hf-secret
          civitaiToken: civitai-secret
        \(extra)
        """
    }

    /// Polls an install until `condition` holds.
    func waitForInstall(_ server: ServerProcess, _ id: String, timeout: Duration = .seconds(60), _ condition: (JSONValue) -> Bool) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (_, install) = try await server.json(.GET, "/admin/models/installs/\(id)")
            if condition(install) { return install }
            guard ContinuousClock.now < deadline else { throw TestFailure("install \(id) never got there: \(install)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    func finished(_ server: ServerProcess, _ id: String) async throws -> JSONValue {
        try await waitForInstall(server, id) { ["succeeded", "failed", "cancelled"].contains($0["state"]?.stringValue ?? "") }
    }

    func install(_ server: ServerProcess, _ body: JSONValue) async throws -> String {
        let (status, answer) = try await server.json(.POST, "/admin/models/install", body)
        #expect(status == 202, "\(answer)")
        return try #require(answer["id"]?.stringValue, "\(answer)")
    }

    func leftovers(_ server: ServerProcess, _ folder: String = "Stable-diffusion") -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: server.dataDirectory + "/models/" + folder)) ?? []).filter { $0.hasPrefix(".install-") }
    }

    @Test func aFileIsDownloadedOverHTTPSResumedAfterADroppedConnectionAndRegistered() async throws {
        let site = try await ModelSite()
        defer { site.stop() }
        try site.add("plain.safetensors", Self.file)
        let server = try await ServerProcess(config: config(site), models: ["demo.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        // The first connection is cut after 700 KiB: the install goes on from there with a Range request.
        let id = try await install(server, ["url": .string(site.base + "/files/plain.safetensors?drop=716800"), "sha256": .string(Self.fileSHA256)])
        let done = try await finished(server, id)
        #expect(done["state"] == "succeeded", "\(done)")
        #expect(done["receivedBytes"]?.integerValue == Int64(Self.file.count) && done["totalBytes"]?.integerValue == Int64(Self.file.count))
        #expect(done["progress"]?.doubleValue == 1 && done["sha256"]?.stringValue == Self.fileSHA256)
        #expect((done["attempts"]?.integerValue ?? 0) >= 2, "\(done)")
        let ranges = try await site.log().filter { $0["path"] == "/files/plain.safetensors" }.map { $0["range"]?.stringValue }
        #expect(ranges.count == 2 && ranges[0] == nil && ranges[1]?.hasPrefix("bytes=") == true && ranges[1] != "bytes=0-", "\(ranges)")
        // Registered as an upload is: hashed, listed, and the same bytes on disk.
        let models = try await server.json(.GET, "/sdapi/v1/sd-models").1.arrayValue ?? []
        let listed = models.first { $0["model_name"] == "plain" }
        #expect(listed?["sha256"]?.stringValue == Self.fileSHA256, "\(models)")
        #expect(FileManager.default.contents(atPath: server.dataDirectory + "/models/Stable-diffusion/plain.safetensors") == Self.file)
        #expect(leftovers(server).isEmpty)
        // A second install of the same name is refused at once.
        let (again, refusal) = try await server.json(.POST, "/admin/models/install", ["url": .string(site.base + "/files/plain.safetensors")])
        #expect(again == 409, "\(refusal)")
        // The list has it, newest first.
        let list = try await server.json(.GET, "/admin/models/installs").1["installs"]?.arrayValue ?? []
        #expect(list.first?["id"]?.stringValue == id)
    }

    @Test func huggingFaceFilesAreResolvedAndTheTokenGoesOnlyToTheSite() async throws {
        let site = try await ModelSite()
        defer { site.stop() }
        try site.add("model.safetensors", Self.file)
        let server = try await ServerProcess(config: config(site), models: ["demo.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let id = try await install(server, ["url": "studio/private-weights/unet/model.safetensors", "revision": "v1.0"])
        let done = try await finished(server, id)
        #expect(done["state"] == "succeeded" && done["site"] == "huggingface" && done["name"] == "model.safetensors", "\(done)")
        #expect(done["sha256"]?.stringValue == Self.fileSHA256)
        let log = try await site.log()
        let resolve = log.first { $0["path"]?.stringValue?.hasPrefix("/studio/private-weights/resolve/v1.0/unet/model.safetensors") == true }
        #expect(resolve?["authorization"] == "Bearer hf-secret", "\(log)")
        let cdn = log.filter { $0["path"]?.stringValue?.hasPrefix("/cdn/") == true }
        #expect(cdn.count == 1 && cdn.allSatisfy { $0["authorization"]?.isNull ?? true }, "no token to the CDN: \(cdn)")
        // The sha256 Hugging Face publishes is checked: a file that does not match it is not kept.
        try site.set("hf-etag-override", String(repeating: "ab", count: 32))
        let bad = try await install(server, ["url": .string(site.base + "/studio/weights/blob/main/model.safetensors"), "name": "other.safetensors"])
        let failed = try await finished(server, bad)
        #expect(failed["state"] == "failed" && failed["error"]?.stringValue?.contains("not the expected " + String(repeating: "ab", count: 32)) == true, "\(failed)")
        #expect(!FileManager.default.fileExists(atPath: server.dataDirectory + "/models/Stable-diffusion/other.safetensors") && leftovers(server).isEmpty)
    }

    @Test func civitaiLinksAreLookedUpTypedAndDownloadedWithTheToken() async throws {
        let site = try await ModelSite()
        defer { site.stop() }
        try site.add("detail-lora.safetensors", ModelManagementTests.safetensors(tensor: "lora_unet_down.lora_up.weight", shape: [64, 64]))
        try site.set("civitai.json", #"{"128713": {"file": "detail-lora.safetensors", "type": "LORA", "model": 58390}}"#)
        let server = try await ServerProcess(config: config(site), models: ["demo.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        // Declared a checkpoint, the link is a LoRA: refused.
        let wrong = try await install(server, ["url": .string(site.civitai + "/models/58390?modelVersionId=128713"), "type": "stableDiffusion"])
        let refused = try await finished(server, wrong)
        #expect(refused["state"] == "failed" && refused["error"]?.stringValue?.contains("is a LoRA on Civitai, not a checkpoint") == true, "\(refused)")
        // With no type, the site's is taken; a model page without a version means its latest.
        let id = try await install(server, ["url": .string(site.civitai + "/models/58390/detail-tweaker")])
        let done = try await finished(server, id)
        #expect(done["state"] == "succeeded" && done["type"] == "lora" && done["name"] == "detail-lora.safetensors", "\(done)")
        let loras = try await server.json(.GET, "/sdapi/v1/loras").1.arrayValue ?? []
        #expect(loras.contains { $0["name"] == "detail-lora" }, "\(loras)")
        let downloads = try await site.log().filter { $0["path"]?.stringValue?.hasPrefix("/api/download/models/") == true }
        #expect(!downloads.isEmpty && downloads.allSatisfy { $0["authorization"] == "Bearer civitai-secret" })
        let files = try await site.log().filter { $0["path"]?.stringValue?.hasPrefix("/files/") == true }
        #expect(files.allSatisfy { $0["authorization"]?.isNull ?? true }, "the token stays on the site's own address: \(files)")
    }

    @Test func wrongFilesAreRefusedAndLeaveNothing() async throws {
        let site = try await ModelSite()
        defer { site.stop() }
        try site.add("plain.safetensors", Self.file)
        try site.add("page.safetensors", Data("<html>Please sign in</html>".utf8))
        try site.add("lora.safetensors", ModelManagementTests.safetensors(tensor: "lora_te_text_model.lora_down.weight", shape: [8, 8]))
        let server = try await ServerProcess(
            config: config(site, extra: "  maxUploadBytes: 1048576"), models: ["demo.safetensors": DemoCheckpoint.contents()]
        )
        defer { server.destroy() }
        func failure(_ body: JSONValue) async throws -> String {
            let done = try await finished(server, try await install(server, body))
            #expect(done["state"] == "failed", "\(done)")
            return done["error"]?.stringValue ?? ""
        }
        let small = ModelManagementTests.safetensors(bytes: 64 << 10)
        try site.add("small.safetensors", small)
        #expect(try await failure(["url": .string(site.base + "/files/small.safetensors"), "sha256": .string(String(repeating: "0", count: 64))]).contains("not the expected"))
        #expect(try await failure(["url": .string(site.base + "/files/page.safetensors")]).contains("safetensors"))
        #expect(try await failure(["url": .string(site.base + "/files/lora.safetensors")]).contains("is a LoRA, not a checkpoint"))
        #expect(try await failure(["url": .string(site.base + "/files/plain.safetensors")]).contains("models.maxUploadBytes"))
        #expect(try await failure(["url": .string(site.base + "/files/missing.safetensors")]).contains("404"))
        #expect(leftovers(server).isEmpty)
        let names = try await server.json(.GET, "/sdapi/v1/sd-models").1.arrayValue?.compactMap { $0["model_name"]?.stringValue } ?? []
        #expect(names == ["demo"], "\(names)")
        // Bad requests are refused at once, with the field named.
        for (body, field) in [(["url": "ftp://example.com/x.safetensors"], "url"), (["url": "justaname"], "url"),
                              (["url": .string(site.base + "/files/x.safetensors"), "sha256": "abc"], "sha256"),
                              (["url": .string(site.base + "/files/x.safetensors"), "type": "poster"], "type"),
                              (["url": .string(site.base + "/download?id=3")], "name")] as [(JSONValue, String)] {
            let (status, answer) = try await server.json(.POST, "/admin/models/install", body)
            #expect(status == 400 && answer["field"]?.stringValue == field && answer["message"]?.stringValue?.isEmpty == false, "\(body): \(answer)")
        }
    }

    @Test(.enabled(if: TmpfsMount.isPossible, "mounting a tmpfs needs root (scripts/test runs as root)"))
    func aFileLargerThanTheFreeDiskIsRefusedBeforeItIsDownloaded() async throws {
        let site = try await ModelSite()
        defer { site.stop() }
        try site.add("big-lora.safetensors", Self.file)
        let server = try await ServerProcess(config: config(site), models: ["demo.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        // The LoRA folder is a 1 MiB disk of its own; the file is 2 MiB.
        let disk = try TmpfsMount(sizeMiB: 1)
        defer { disk.unmount() }
        let loras = server.dataDirectory + "/models/Lora"
        try FileManager.default.removeItem(atPath: loras)
        try FileManager.default.createSymbolicLink(atPath: loras, withDestinationPath: disk.path)
        let done = try await finished(server, try await install(server, ["url": .string(site.base + "/files/big-lora.safetensors"), "type": "lora"]))
        #expect(done["state"] == "failed" && done["error"]?.stringValue?.contains("more bytes; the models folder has") == true, "\(done)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: disk.path).isEmpty, "nothing written")
    }

    @Test func privateAddressesAndRedirectsThereAreRefused() async throws {
        let site = try await ModelSite(publicAddress: true)
        defer { site.stop() }
        try site.add("plain.safetensors", Self.file)
        let server = try await ServerProcess(config: """
            models:
              caCertificateFile: \(site.certificate)
            """, models: ["demo.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let (status, answer) = try await server.json(.POST, "/admin/models/install", ["url": .string("https://127.0.0.1:\(site.port)/files/plain.safetensors")])
        #expect(status == 400 && answer["detail"]?.stringValue?.contains("127.0.0.1 is a loopback address") == true, "\(answer)")
        // From the public address, a redirect to the loopback one is not followed.
        let target = "http://127.0.0.1:\(site.port)/files/plain.safetensors"
        let id = try await install(server, [
            "url": .string(site.base + "/redirect?to=" + (target.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")), "name": "plain.safetensors",
        ])
        let done = try await finished(server, id)
        #expect(done["state"] == "failed" && done["error"]?.stringValue?.contains("127.0.0.1 is a loopback address") == true, "\(done)")
        #expect(try await site.log().filter { $0["path"] == "/files/plain.safetensors" }.isEmpty, "the private address was never asked")
        // The public address itself is fine.
        let fine = try await install(server, ["url": .string(site.base + "/files/plain.safetensors")])
        #expect(try await finished(server, fine)["state"] == "succeeded")
    }

    @Test func anInstallResumesAfterARestartAndCanBeCancelled() async throws {
        let site = try await ModelSite()
        defer { site.stop() }
        try site.add("slow.safetensors", Self.file)
        try site.add("cancelled.safetensors", Self.file)
        let server = try await ServerProcess(config: config(site), models: ["demo.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        // 2 MiB at 512 KiB/s: the restart comes about a quarter of the way in.
        let id = try await install(server, ["url": .string(site.base + "/files/slow.safetensors?rate=524288")])
        let started = try await waitForInstall(server, id) { ($0["receivedBytes"]?.integerValue ?? 0) > 0 }
        #expect(started["state"] == "downloading" && started["bytesPerSecond"]?.doubleValue != nil, "\(started)")
        await server.stop()
        #expect(leftovers(server).count == 1, "the partial file is kept for the next start")
        try await server.start()
        let done = try await finished(server, id)
        #expect(done["state"] == "succeeded" && done["sha256"]?.stringValue == Self.fileSHA256, "\(done)")
        let ranges = try await site.log().filter { $0["path"] == "/files/slow.safetensors" }.compactMap { $0["range"]?.stringValue }
        #expect(ranges.contains { $0 != "bytes=0-" }, "resumed from where it stopped: \(ranges)")
        #expect(FileManager.default.contents(atPath: server.dataDirectory + "/models/Stable-diffusion/slow.safetensors") == Self.file)
        // Cancelled mid-way: nothing is left, and the name is free again.
        let cancelled = try await install(server, ["url": .string(site.base + "/files/cancelled.safetensors?rate=262144")])
        _ = try await waitForInstall(server, cancelled) { ($0["receivedBytes"]?.integerValue ?? 0) > 0 }
        let (status, answer) = try await server.json(.DELETE, "/admin/models/installs/\(cancelled)")
        #expect(status == 200 && answer["state"] == "cancelled", "\(answer)")
        #expect(leftovers(server).isEmpty && !FileManager.default.fileExists(atPath: server.dataDirectory + "/models/Stable-diffusion/cancelled.safetensors"))
        #expect(try await server.json(.DELETE, "/admin/models/installs/\(cancelled)").0 == 200, "a finished install is forgotten")
        #expect(try await server.json(.GET, "/admin/models/installs/\(cancelled)").0 == 404)
    }
}

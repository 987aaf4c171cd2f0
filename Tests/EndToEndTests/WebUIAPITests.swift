import Foundation
import Testing

/// The `webuiapi` client from PyPI, in the virtual environment `scripts/install-test-deps.sh` makes under
/// `~/.cache/sdbox` (`$XDG_CACHE_HOME/sdbox`).
enum WebUIAPIClient {
    static var python: String { testTool("webuiapi-venv", "python") }

    static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: python) }

    /// The acceptance script, in this package's `Tests/acceptance`.
    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("acceptance/webuiapi_suite.py").path
    }
}

@Suite(
    .serialized, .timeLimit(.minutes(2)),
    .enabled(if: WebUIAPIClient.isAvailable, "webuiapi is not installed: run scripts/install-test-deps.sh (scripts/test does) to run the A1111 client suite")
)
struct WebUIAPITests {
    @Test func theWebuiapiClientWorksUnchanged() async throws {
        let server = try await ServerProcess(config: pacedWorkers)
        defer { server.destroy() }
        let output = server.dataDirectory + "/webuiapi.log"
        let pid = try spawn([WebUIAPIClient.python, WebUIAPIClient.script, "\(server.port)"], output: output)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 { try await Task.sleep(for: .milliseconds(50)) }
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        #expect((status >> 8) & 0xff == 0 && status & 0x7f == 0, "\(text)")
        for check in ["txt2img", "img2img", "extra-single-image", "png-info", "sd-models", "options", "controlnet", "cmd-flags", "progress-interrupt"] {
            #expect(text.contains("ok \(check)\n"), "\(check): \(text)")
        }
    }
}

import Foundation
import SDBoxCore
import Synchronization

/// Headless Chromium (Debian's `chromium`) driven over the DevTools protocol through a pipe
/// (`--remote-debugging-pipe`: commands in on fd 3, answers and events out on fd 4, each message JSON
/// followed by a NUL byte), so no WebSocket client is needed.
final class Chromium: Sendable {
    let pid: pid_t
    let profile: String
    private let toBrowser: Int32
    private let fromBrowser: Int32
    private let state = Mutex(State())

    private struct State {
        var nextID = 1
        var pending: [Int: CheckedContinuation<JSONValue, any Error>] = [:]
        /// Uncaught exceptions and `console.error` calls of the pages, as text.
        var problems: [String] = []
        var closed = false
        var eventHandler: (@Sendable (_ method: String, _ params: JSONValue, _ session: String?) -> Void)?
    }

    /// The browser's path: `$CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`; nil when absent.
    static let executable: String? = {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["CHROMIUM"], FileManager.default.isExecutableFile(atPath: path) { return path }
        for folder in (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            for name in ["chromium", "chromium-browser"] where FileManager.default.isExecutableFile(atPath: "\(folder)/\(name)") {
                return "\(folder)/\(name)"
            }
        }
        return nil
    }()

    static var isAvailable: Bool { executable != nil }

    /// Starts the browser with a fresh profile; its output goes to `log`.
    init(log: String) throws {
        guard let executable = Self.executable else { throw TestFailure("chromium is not installed (scripts/install-test-deps.sh installs it)") }
        profile = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-chromium-\(UUID().uuidString)").path
        let commands = try Self.closeOnExecPipe()
        let answers = try Self.closeOnExecPipe()
        toBrowser = commands.write
        fromBrowser = answers.read
        defer {
            close(commands.read)
            close(answers.write)
        }
        pid = try spawn(
            [
                executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--remote-debugging-pipe",
                "--user-data-dir=\(profile)", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
                "--hide-scrollbars", "--force-color-profile=srgb", "--lang=en-US", "about:blank",
            ],
            output: log, descriptors: [3: commands.read, 4: answers.write]
        )
        let reader = Thread { [self] in readAnswers() }
        reader.name = "chromium-devtools"
        reader.start()
    }

    /// A pipe whose ends are closed in child processes (spawn maps the ends it hands over), numbered
    /// above 10 so that mapping them to the child's 3 and 4 cannot overwrite one with the other.
    private static func closeOnExecPipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw TestFailure("pipe failed: \(errno)") }
        let high = fds.map { fcntl($0, F_DUPFD_CLOEXEC, 10) }
        fds.forEach { close($0) }
        guard !high.contains(-1) else { throw TestFailure("fcntl failed: \(errno)") }
        return (high[0], high[1])
    }

    /// Closes the browser and removes its profile.
    func shutDown() {
        kill(-pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        close(toBrowser)
        try? FileManager.default.removeItem(atPath: profile)
    }

    var problems: [String] { state.withLock { $0.problems } }

    /// Hears every other protocol event, on the reader thread (so it must not wait for answers itself).
    func onEvent(_ handler: @escaping @Sendable (_ method: String, _ params: JSONValue, _ session: String?) -> Void) {
        state.withLock { $0.eventHandler = handler }
    }

    // MARK: Protocol

    /// Sends one command (to a page when `session` is set) and waits for its answer's `result`.
    func send(_ method: String, _ params: JSONValue = [:], session: String? = nil, timeout: Duration = .seconds(30)) async throws -> JSONValue {
        let answer = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JSONValue, any Error>) in
            let id: Int? = state.withLock { state in
                guard !state.closed else { return nil }
                let id = state.nextID
                state.nextID += 1
                state.pending[id] = continuation
                return id
            }
            guard let id else {
                continuation.resume(throwing: TestFailure("chromium has exited"))
                return
            }
            var message: JSONValue = ["id": .integer(Int64(id)), "method": .string(method), "params": params]
            if let session { message["sessionId"] = .string(session) }
            let bytes = Array(((try? message.encoded()) ?? Data()) + [0])
            var written = 0
            while written < bytes.count {
                let count = bytes[written...].withUnsafeBytes { write(toBrowser, $0.baseAddress, $0.count) }
                if count <= 0 {
                    fail(id, TestFailure("cannot write to chromium: \(errno)"))
                    return
                }
                written += count
            }
            Task { [self] in
                try? await Task.sleep(for: timeout)
                fail(id, TestFailure("chromium did not answer \(method) within \(timeout)"))
            }
        }
        if let error = answer["error"] {
            throw TestFailure("\(method) failed: \(error)")
        }
        return answer["result"] ?? .null
    }

    private func fail(_ id: Int, _ error: any Error) {
        state.withLock { $0.pending.removeValue(forKey: id) }?.resume(throwing: error)
    }

    /// Reads NUL-separated messages until the browser closes its end: answers resume their command,
    /// exceptions and console errors of pages are kept as problems.
    private func readAnswers() {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fromBrowser, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            buffer.append(contentsOf: chunk[0..<count])
            while let end = buffer.firstIndex(of: 0) {
                if let message = try? JSONValue(parsing: Data(buffer[..<end])) { handle(message) }
                buffer.removeSubrange(...end)
            }
        }
        close(fromBrowser)
        let pending = state.withLock { state in
            state.closed = true
            defer { state.pending = [:] }
            return state.pending
        }
        for continuation in pending.values { continuation.resume(throwing: TestFailure("chromium has exited")) }
    }

    private func handle(_ message: JSONValue) {
        if let id = message["id"]?.integerValue {
            state.withLock { $0.pending.removeValue(forKey: Int(id)) }?.resume(returning: message)
            return
        }
        let params = message["params"]
        switch message["method"]?.stringValue {
        case "Runtime.exceptionThrown":
            let details = params?["exceptionDetails"]
            let text = details?["exception"]?["description"]?.stringValue ?? details?["text"]?.stringValue ?? "\(params ?? .null)"
            state.withLock { $0.problems.append("uncaught: \(text)") }
        case "Runtime.consoleAPICalled" where params?["type"] == "error":
            let text = (params?["args"]?.arrayValue ?? []).map { $0["value"]?.stringValue ?? $0["description"]?.stringValue ?? "" }.joined(separator: " ")
            state.withLock { $0.problems.append("console.error: \(text)") }
        default:
            if let method = message["method"]?.stringValue, let handler = state.withLock({ $0.eventHandler }) {
                handler(method, params ?? .null, message["sessionId"]?.stringValue)
            }
        }
    }

    // MARK: Pages

    /// A new tab of `width` × `height` CSS pixels in the light colour scheme, with its events on.
    func newPage(width: Int = 1280, height: Int = 900) async throws -> BrowserPage {
        let target = try await send("Target.createTarget", ["url": "about:blank"])
        guard let targetID = target["targetId"]?.stringValue else { throw TestFailure("no target: \(target)") }
        let attached = try await send("Target.attachToTarget", ["targetId": .string(targetID), "flatten": true])
        guard let session = attached["sessionId"]?.stringValue else { throw TestFailure("no session: \(attached)") }
        let page = BrowserPage(browser: self, session: session)
        _ = try await page.send("Page.enable")
        _ = try await page.send("Runtime.enable")
        try await page.resize(width: width, height: height)
        _ = try await page.send("Emulation.setEmulatedMedia", ["features": [["name": "prefers-color-scheme", "value": "light"]]])
        return page
    }
}

/// One tab of ``Chromium``: navigation, script evaluation, waiting for a condition, files for file
/// inputs and screenshots.
struct BrowserPage: Sendable {
    let browser: Chromium
    let session: String

    func send(_ method: String, _ params: JSONValue = [:]) async throws -> JSONValue {
        try await browser.send(method, params, session: session)
    }

    func resize(width: Int, height: Int) async throws {
        _ = try await send("Emulation.setDeviceMetricsOverride", [
            "width": .integer(Int64(width)), "height": .integer(Int64(height)), "deviceScaleFactor": 1, "mobile": .bool(width < 700),
        ])
    }

    /// Opens `url` and waits until its document has loaded.
    func open(_ url: String) async throws {
        _ = try await send("Page.navigate", ["url": .string(url)])
        try await waitFor("document.readyState === 'complete' && location.href === \(jsString(url))", "\(url) to load")
    }

    /// Evaluates `expression` (awaiting a promise) and answers its value; a thrown exception fails.
    @discardableResult
    func evaluate(_ expression: String) async throws -> JSONValue {
        let answer = try await send("Runtime.evaluate", ["expression": .string(expression), "awaitPromise": true, "returnByValue": true])
        if let exception = answer["exceptionDetails"] {
            throw TestFailure("script failed: \(exception["exception"]?["description"]?.stringValue ?? "\(exception)")\n\(expression)")
        }
        return answer["result"]?["value"] ?? .null
    }

    /// Polls `expression` until it is truthy (not false, null, 0 or empty) and answers its value.
    @discardableResult
    func waitFor(_ expression: String, timeout: Duration = .seconds(20), _ what: String) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        var last: JSONValue = .null
        while ContinuousClock.now < deadline {
            last = try await evaluate(expression)
            switch last {
            case .null, .bool(false), .integer(0), .string(""): break
            case .number(let value) where value == 0: break
            default: return last
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let text = try? await evaluate("document.querySelector('main')?.innerText ?? document.body.innerText")
        throw TestFailure("timed out waiting for \(what); last value \(last); page text:\n\(text?.stringValue ?? "?")")
    }

    /// Clicks the element `selector` finds (which must exist).
    func click(_ selector: String) async throws {
        try await evaluate("""
            (() => { const element = document.querySelector(\(jsString(selector)));
              if (!element) throw new Error('nothing matches ' + \(jsString(selector)));
              element.click(); })()
            """)
    }

    /// Sets a form control's value as typing would, firing `input` and `change`.
    func fill(_ selector: String, _ value: String) async throws {
        try await evaluate("""
            (() => { const element = document.querySelector(\(jsString(selector)));
              if (!element) throw new Error('nothing matches ' + \(jsString(selector)));
              element.value = \(jsString(value));
              element.dispatchEvent(new Event('input', { bubbles: true }));
              element.dispatchEvent(new Event('change', { bubbles: true })); })()
            """)
    }

    /// Chooses files for the file input `selector`, as the file picker would.
    func setFiles(_ selector: String, _ paths: [String]) async throws {
        let document = try await send("DOM.getDocument", ["depth": 0])
        guard let root = document["root"]?["nodeId"] else { throw TestFailure("no document node") }
        let found = try await send("DOM.querySelector", ["nodeId": root, "selector": .string(selector)])
        guard let node = found["nodeId"], node != 0 else { throw TestFailure("nothing matches \(selector)") }
        _ = try await send("DOM.setFileInputFiles", ["nodeId": node, "files": .array(paths.map { .string($0) })])
    }

    /// Saves a PNG of the whole page (up to 4000 pixels high) to `path`.
    func screenshot(_ path: String) async throws {
        let metrics = try await send("Page.getLayoutMetrics")
        let width = metrics["cssLayoutViewport"]?["clientWidth"]?.doubleValue ?? 1280
        let height = min(metrics["cssContentSize"]?["height"]?.doubleValue ?? 900, 4000)
        let shot = try await send("Page.captureScreenshot", [
            "format": "png", "captureBeyondViewport": true,
            "clip": ["x": 0, "y": 0, "width": .number(width), "height": .number(height), "scale": 1],
        ])
        guard let data = shot["data"]?.stringValue.flatMap({ Data(base64Encoded: $0) }) else { throw TestFailure("no screenshot data") }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: path))
    }
}

/// `text` as a JavaScript string literal.
func jsString(_ text: String) -> String {
    (try? JSONValue.string(text).encoded()).map { String(decoding: $0, as: UTF8.self) } ?? "''"
}

import Foundation
import HTTPTypes
import ImageCodec
import SDBoxCore
@testable import Appliance
@testable import SDBoxServer
import Storage
import Testing

@Suite struct InfotextTests {
    @Test func parsesPromptNegativePromptAndParameters() {
        let fields = Infotext.parse("""
            a red fox,
            in snow
            Negative prompt: blurry
            ugly
            Steps: 20, Sampler: DPM++ 2M, CFG scale: 7.0, Seed: 42, Size: 512x768, Model: demo, Lora hashes: "fox: 1234, snow: 5678"
            """)
        #expect(fields["Prompt"] == "a red fox,\nin snow")
        #expect(fields["Negative prompt"] == "blurry\nugly")
        #expect(fields["Steps"] == "20")
        #expect(fields["Sampler"] == "DPM++ 2M")
        #expect(fields["Size-1"] == "512")
        #expect(fields["Size-2"] == "768")
        #expect(fields["Size"] == nil)
        #expect(fields["Lora hashes"] == "fox: 1234, snow: 5678")
    }

    @Test func aLastLineWithoutParametersIsPrompt() {
        let fields = Infotext.parse("just a prompt: with a colon")
        #expect(fields["Prompt"] == "just a prompt: with a colon")
        #expect(fields["Negative prompt"] == "")
        #expect(fields.count == 2)
    }
}

@Suite struct EmbeddedImagesTests {
    let png = try! PNGCodec.encode(PixelImage(width: 8, height: 8)).base64EncodedString()

    @Test func findsImagesAnywhereAndPutsThemBack() throws {
        let answer: JSONValue = [
            "images": [.string(png), .string("data:image/png;base64," + png)], "info": "Success", "nested": ["image": .string(png)],
            "short": "iVBORw0KGgo", "text": .string(String(repeating: "a", count: 100)),
        ]
        let (stored, images) = EmbeddedImages.extract(from: answer) { index, fileExtension in "k\(index).\(fileExtension)" }
        #expect(images.map(\.key) == ["k1.png", "k2.png", "k3.png"])
        #expect(try images.allSatisfy { try PNGCodec.decode($0.data).width == 8 })
        #expect(stored["images"] == ["k1.png", "k2.png"])
        #expect(stored["nested"]?["image"] == "k3.png")
        #expect(stored["short"] == "iVBORw0KGgo")
        #expect(stored["info"] == "Success")
        let inlined = EmbeddedImages.inline(["k1.png": png, "k2.png": png, "k3.png": png], into: stored)
        #expect(inlined["images"] == [.string(png), .string(png)])
        #expect(inlined["nested"]?["image"] == .string(png))
    }

    @Test func recognisesFormatsByMagic() {
        #expect(EmbeddedImages.fileExtension(of: Data([0x89, 0x50, 0x4E, 0x47, 0x0D])) == "png")
        #expect(EmbeddedImages.fileExtension(of: Data([0xFF, 0xD8, 0xFF, 0xE0])) == "jpg")
        #expect(EmbeddedImages.fileExtension(of: Data("hello".utf8)) == nil)
    }
}

@Suite struct TaskRecordCompatibilityTests {
    /// A record as sdbox wrote it before passthrough and webhooks: it still decodes.
    @Test func oldRecordsDecode() throws {
        let old = """
            {"id":"abc","kind":"txt2img","model":"demo.safetensors","user":"default","request":{"prompt":"x"},"state":"succeeded",
             "createdAt":1700000000000,"attempts":1,"priority":0,
             "result":{"images":["images/default/abc_1.png"],"info":{"seed":1},"parameters":{}}}
            """
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        let task = try decoder.decode(TaskRecord.self, from: Data(old.utf8))
        #expect(task.callback == nil)
        #expect(task.result?.response == nil)
        #expect(task.result?.images == ["images/default/abc_1.png"])
    }

    @Test func callbacksMustBeHTTP() {
        for url in ["http://127.0.0.1:9/hook", "https://example.com/x?y=1"] {
            #expect(throws: Never.self) { try TaskCallback.validate(url) }
        }
        for url in ["ftp://example.com/x", "file:///etc/passwd", "example.com/hook", "http://", "javascript:alert(1)"] {
            #expect(throws: RequestValidationError.self, "\(url)") { try TaskCallback.validate(url) }
        }
    }
}

@Suite struct CallbackStoreTests {
    @Test func pendingCallbacksAreIndexedAndFinalTasksKeepRecordingAttempts() async throws {
        let directory = try TemporaryDirectory()
        let store = LMDBTaskStore(database: try Database(path: directory.path))
        var record = TaskRecord(id: TaskID.make(), kind: .passthrough, model: "demo.safetensors", user: "default", request: [:])
        record.callback = TaskCallback(url: "http://127.0.0.1:9/hook", baseURL: nil)
        let task = try await store.insert(record)
        _ = try await store.insert(TaskRecord(id: TaskID.make(), kind: .txt2img, model: "demo.safetensors", user: "default", request: [:]))
        #expect(try await store.pendingCallbacks().isEmpty, "a webhook is due once its task is final")

        try await store.update(task.id) { $0.state = .running }
        try await store.update(task.id) { $0.state = .succeeded }
        let attempt = WebhookAttempt(at: Date(), status: 500, error: "the receiver answered 500", milliseconds: 3)
        let after = try await store.updateCallback(task.id) { $0.attempts.append(attempt) }
        #expect(after.state == .succeeded)
        #expect(after.callback?.attempts.count == 1)
        #expect(try await store.pendingCallbacks().map(\.id) == [task.id])
        try await store.updateCallback(task.id) { $0.state = .delivered }
        #expect(try await store.pendingCallbacks().isEmpty)
        // The task itself stays final.
        await #expect(throws: TaskStoreError.self) { try await store.update(task.id) { $0.state = .running } }
    }
}

@Suite struct PassthroughSettingsTests {
    @Test func readsPassthroughWebhookAndEventKeys() throws {
        let config = try ServerConfiguration.load(yaml: """
            passthrough:
              prefixes: [/controlnet/, /adetailer, /sam/v2]
            webhooks: {secret: s3cret, maxAttempts: 3, retrySeconds: 2, maxRetrySeconds: 5, timeoutSeconds: 4}
            events: {intervalMilliseconds: 100}
            """)
        #expect(config.passthrough.prefixes == ["/controlnet", "/adetailer", "/sam/v2"])
        #expect(config.webhooks.secret == "s3cret")
        #expect(config.webhooks.maxAttempts == 3)
        #expect(config.events.intervalMilliseconds == 100)
        // 2 s, doubling, at most 5 s.
        #expect([2, 3, 4, 5].map { config.webhooks.delay(beforeAttempt: $0) } == [.seconds(2), .seconds(4), .seconds(5), .seconds(5)])
        #expect(ServerConfiguration().passthrough.prefixes == ["/controlnet"])
    }

    @Test(arguments: ["controlnet", "/", "/tasks", "/sdapi/v2", "/a/../b", "/con trol", "/objects/x"])
    func refusesPrefixesThatAreNotExtensionPaths(_ prefix: String) {
        #expect(throws: ConfigurationError.self) { try ServerConfiguration.load(yaml: "passthrough: {prefixes: [\"\(prefix)\"]}") }
    }

    @Test func forwardsHeadersButHopByHopAndSdboxOwn() {
        let fields: HTTPFields = [
            .contentType: "application/json", .connection: "keep-alive, X-Private", HTTPField.Name("X-Private")!: "1",
            .authorization: "Bearer key", .sdModel: "demo", .taskFlag: "true", HTTPField.Name("X-Trace")!: "t1", HTTPField.Name("Host")!: "box",
        ]
        let forwarded = PassthroughCall.forwardable(fields)
        #expect(forwarded.map(\.name.canonicalName).sorted() == ["content-type", "x-trace"])
    }
}

@Suite struct TaskEventTests {
    func snapshot(_ state: TaskState, attempts: Int = 1, position: Int? = nil, step: Int? = nil, image: String? = nil) -> TaskSnapshot {
        var record = TaskRecord(id: "t", kind: .txt2img, model: "m", user: "u", request: [:])
        record.state = state
        record.attempts = attempts
        var progress: A1111.Progress?
        if let step {
            progress = A1111.Progress(progress: Double(step) / 10, eta_relative: 1, state: A1111.State(job_count: 1, sampling_step: step, sampling_steps: 10), current_image: image)
        }
        return TaskSnapshot(record: record, position: position, eta: nil, progress: progress)
    }

    @Test func eventsTellWhatChanged() {
        #expect(snapshot(.queued, position: 2).events(since: nil) == [.queued(position: 2, eta: nil)])
        #expect(snapshot(.queued, position: 2).events(since: snapshot(.queued, position: 2)).isEmpty)
        #expect(snapshot(.queued, position: 1).events(since: snapshot(.queued, position: 2)) == [.queued(position: 1, eta: nil)])
        let first = snapshot(.running, step: 1, image: "p1")
        #expect(first.events(since: snapshot(.queued, position: 1)) == [
            .started(attempt: 1), .progress(step: 1, steps: 10, job: 0, jobs: 1, fraction: 0.1, eta: 1), .preview("p1"),
        ])
        #expect(snapshot(.running, step: 1, image: "p1").events(since: first).isEmpty)
        #expect(snapshot(.running, step: 2, image: "p1").events(since: first) == [.progress(step: 2, steps: 10, job: 0, jobs: 1, fraction: 0.2, eta: 1)])
        // A second attempt after a worker was lost starts again.
        #expect(snapshot(.running, attempts: 2).events(since: first) == [.started(attempt: 2)])
        let done = snapshot(.succeeded)
        #expect(done.events(since: first) == [.final(done.record)])
    }
}

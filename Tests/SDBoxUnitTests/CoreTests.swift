@testable import Appliance
import Foundation
import ImageCodec
import ReferenceWorker
import SDBoxCore
import SDBoxServer
import Scheduler
import Testing

@Suite struct GenerationRequestTests {
    @Test func readsFieldsAndStripsSdboxOwn() throws {
        let request = try GenerationRequest(
            kind: .txt2img,
            body: ["stable_diffusion_model": "demo.safetensors", "sd_vae": "vae.pt", "prompt": "fox", "steps": 8, "width": 64, "height": 64, "alwayson_scripts": [:]]
        )
        #expect(request.model == "demo.safetensors")
        #expect(request.steps == 8 && request.width == 64 && request.batchSize == 1)
        #expect(request.workerBody["stable_diffusion_model"] == nil)
        #expect(request.workerBody["sd_vae"] == nil)
        #expect(request.workerBody["override_settings"] == ["sd_vae": "vae.pt"])
        #expect(request.workerBody["alwayson_scripts"] == [:])
    }

    @Test func defaultsAreA1111s() throws {
        let request = try GenerationRequest(kind: .txt2img, body: [:])
        #expect(request.model == nil)
        #expect(request.steps == 50 && request.width == 512 && request.height == 512)
    }

    static let badBodies: [(JSONValue, String)] = [
        (["steps": "eight"], "steps"),
        (["width": 64.5], "width"),
        (["prompt": 3], "prompt"),
        (["styles": [1]], "styles"),
        (["override_settings": "x"], "override_settings"),
        (["steps": 0], "steps"),
        (["steps": 100000], "steps"),
        (["width": 8], "width"),
        (["batch_size": 10, "n_iter": 10], "batch_size"),
        (["stable_diffusion_model": 1], "stable_diffusion_model"),
    ]

    @Test(arguments: badBodies)
    func namesTheBadField(body: JSONValue, field: String) {
        #expect(throws: RequestValidationError.self) { try GenerationRequest(kind: .txt2img, body: body) }
        do {
            _ = try GenerationRequest(kind: .txt2img, body: body)
        } catch {
            #expect(error.field == field)
            #expect(error.message.contains(field))
        }
    }

    @Test func nullsAreAccepted() throws {
        _ = try GenerationRequest(kind: .txt2img, body: ["hr_checkpoint_name": nil, "script_name": nil, "seed": nil])
    }

    @Test func img2imgNeedsInitImages() {
        #expect(throws: RequestValidationError.self) { try GenerationRequest(kind: .img2img, body: ["prompt": "x"]) }
        #expect(throws: RequestValidationError.self) { try GenerationRequest(kind: .img2img, body: ["init_images": []]) }
    }

    @Test func bodyMustBeAnObject() {
        #expect(throws: RequestValidationError.self) { try GenerationRequest(kind: .txt2img, body: [1, 2]) }
    }
}

@Suite struct JSONValueTests {
    static let documents: [JSONValue] = [
        nil, true, 0, -42, 9_007_199_254_740_993, 1.0, -2.5, 0.1, 1e-05, 1.2345678901234568e+17, 1e300,
        "plain", "quote \" backslash \\ slash / newline \n tab \t bell \u{07} del \u{7f} é 😀 \u{2028}",
        [], [:], [1, "two", [3.5, nil], ["b": false, "a": [:]]],
        ["zeta": 1, "alpha": ["y": "x", "b": [true]], "Ünïcode": "ok", "": 0],
        // Keys in byte order, not in the order of their normalized text.
        ["e\u{301}x": 8, "\u{e9}": 7],
    ]

    /// The writer's bytes are what `JSONEncoder` with sorted keys and unescaped slashes makes.
    @Test(arguments: documents)
    func writesWhatJSONEncoderWrites(document: JSONValue) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        #expect(String(decoding: try document.encoded(), as: UTF8.self) == String(decoding: try encoder.encode(document), as: UTF8.self))
        #expect(try JSONValue(parsing: document.encoded()) == document)
    }

    struct Sample: Codable {
        enum Kind: String, Codable { case a, b }
        var text = "fox / \"quoted\""
        var whole = 7.0
        var fraction: Float = 0.1
        var big: UInt64 = .max
        var small: Int8 = -3
        var missing: String? = nil
        var present: Int? = 2
        var kind = Kind.b
        var list: [Double?] = [1.5, nil]
        var byNumber: [Int: String] = [1: "one", 20: "twenty"]
        var data = Data([0, 1, 2, 250])
        var url = URL(string: "https://example.com/a?b=c")!
        var date = Date(timeIntervalSinceReferenceDate: 12.5)
        var nested: [[String: [Bool]]] = [["x": [true, false]], [:]]
        var json: JSONValue = ["free": [1, "form"]]
        var progress = A1111.Progress(progress: 0.25, eta_relative: 3, state: A1111.State(job: "txt2img"))
    }

    class Base: Encodable {
        var b = 1
    }

    final class Derived: Base {
        var c = 2
        enum CodingKeys: String, CodingKey { case c }

        override func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(c, forKey: .c)
            try super.encode(to: container.superEncoder())
        }
    }

    @Test func encodesSubclassesAndDecimalsAsJSONEncoderDoes() throws {
        #expect(try JSONValue(encoding: Derived()) == ["c": 2, "super": ["b": 1]])
        #expect(try JSONValue(encoding: [Decimal(string: "123.456")!, Decimal(string: "1e-7")!]) == [123.456, 1e-07])
    }

    /// Encoding into a value gives what `JSONEncoder` wrote and parsing read back.
    @Test func encodesValuesAsJSONEncoderWrites() throws {
        let viaBytes = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(Sample()))
        let direct = try JSONValue(encoding: Sample())
        #expect(direct == viaBytes)
        #expect(try direct.encoded() == viaBytes.encoded())
        #expect(try JSONValue(encoding: [String]()) == [])
        #expect(try JSONValue(encoding: Optional<Int>.none) == nil)
        #expect(throws: EncodingError.self) { try JSONValue(encoding: ["x": Double.nan]) }
    }

    @Test func refusesNumbersJSONCannotHold() {
        for number in [Double.nan, .infinity, -.infinity] {
            #expect(throws: EncodingError.self) { try JSONValue.array([.number(number)]).encoded() }
        }
    }
}

/// sdbox's JSON parser reads every document as Foundation's `JSONDecoder` reads it into a `JSONValue`,
/// and refuses what it refuses.
@Suite struct JSONParserTests {
    func foundation(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    @Test(arguments: [
        "0", "-0", "1.0", "1e2", "-1.5E-3", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        "123456789012345678901234567890", "0.1", " \t\n\r[1, 2 ,3]\n", "true", "false", "null", "\"\"", "{}", "[]",
        #""\u00e9\u4e2d\ud83d\ude00 \"\\\/\b\f\n\r\t""#, #""héllo wörld 😀""#, #"{"a":1,"a":2}"#, "[1,]", #"{"a":1,}"#,
        #"{"prompt":"a fox","steps":20,"cfg_scale":7.5,"restore_faces":false,"override_settings":{"sd_vae":null},"x":[[],{}]}"#,
    ])
    func readsAsFoundationDoes(text: String) throws {
        #expect(try JSONValue(parsing: Array(text.utf8)) == (try foundation(text)))
    }

    @Test(arguments: ["01", "1.", "-", ".5", "+1", "[,]", "[1,,]", "{,}", "tru", "[1] x", #"{"a" 1}"#, #"{a:1}"#, "\"\u{01}\"", "\"abc", "[", "", "NaN", "1e999"])
    func refusesWhatIsNotJSON(text: String) {
        #expect(throws: (any Error).self) { try JSONValue(parsing: Array(text.utf8)) }
        #expect(throws: (any Error).self) { try foundation(text) }
    }

    @Test func refusesStringsThatAreNotUnicode() {
        for text in [#""\ud83d""#, #""\ude00x""#] {
            #expect(throws: (any Error).self, "\(text)") { try JSONValue(parsing: Array(text.utf8)) }
        }
        // A string whose bytes are not UTF-8.
        #expect(throws: (any Error).self) { try JSONValue(parsing: [0x22, 0xC3, 0x28, 0x22]) }
    }

    /// Random documents, written compact and with whitespace, read back the same by both.
    @Test func randomDocumentsReadAsFoundationReadsThem() throws {
        var random = SplitMix64(seed: 7)
        func value(_ depth: Int) -> JSONValue {
            switch random.next() % (depth > 3 ? 5 : 7) {
            case 0: return .null
            case 1: return .bool(random.next() % 2 == 0)
            case 2: return .integer(Int64(bitPattern: random.next()) >> Int64(random.next() % 64))
            case 3: return .number(Double(Int64(bitPattern: random.next()) % 1_000_000) / 1000 + 0.5)
            case 4:
                let alphabet = Array("abc xyz\"\\/\n\té中😀\u{1}")
                return .string(String((0..<Int(random.next() % 12)).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] }))
            case 5: return .array((0..<Int(random.next() % 5)).map { _ in value(depth + 1) })
            default:
                return .object(Dictionary((0..<Int(random.next() % 5)).map { _ in ("k\(random.next() % 10)", value(depth + 1)) }) { _, last in last })
            }
        }
        for _ in 0..<300 {
            let document = value(0)
            let compact = try document.encodedBytes()
            let spaced = Array(String(decoding: compact, as: UTF8.self).replacingOccurrences(of: ",", with: " ,\n ").utf8)
            for text in [compact, spaced] {
                #expect(try JSONValue(parsing: text) == (try JSONDecoder().decode(JSONValue.self, from: Data(text))))
            }
        }
    }
}

@Suite struct ImageCodecTests {
    @Test func pngRoundTripKeepsPixelsAndText() throws {
        let image = TestImageRenderer.render(prompt: "fox", seed: 1, width: 48, height: 32, steps: 4)
        let infotext = "fox\nSteps: 4, Seed: 1, Size: 48x32"
        let png = try PNGCodec.encode(image, text: [("parameters", infotext), ("comment", "héllo ✓")])
        #expect(PNGCodec.isPNG(png))
        let decoded = try PNGCodec.decode(png)
        #expect(decoded == image)
        let text = PNGTextChunks.read(from: png)
        #expect(text["parameters"] == infotext)
        #expect(text["comment"] == "héllo ✓")
    }

    @Test func refusesGarbageAndHugeImages() throws {
        #expect(throws: ImageCodecError.self) { try PNGCodec.decode(Data("not a png".utf8)) }
        let png = try PNGCodec.encode(PixelImage(width: 100, height: 100))
        #expect(throws: ImageCodecError.self) { try PNGCodec.decode(png, maxPixels: 9999) }
    }

    @Test func renderingIsDeterministic() {
        let a = TestImageRenderer.render(prompt: "fox", seed: 7, width: 32, height: 32, steps: 8)
        let b = TestImageRenderer.render(prompt: "fox", seed: 7, width: 32, height: 32, steps: 8)
        let c = TestImageRenderer.render(prompt: "fox", seed: 8, width: 32, height: 32, steps: 8)
        let d = TestImageRenderer.render(prompt: "owl", seed: 7, width: 32, height: 32, steps: 8)
        #expect(a == b)
        #expect(a != c)
        #expect(a != d)
    }
}

@Suite struct CheckpointTests {
    @Test func durationsInSecondsAndNanoseconds() {
        #expect(Duration.milliseconds(1500).seconds == 1.5)
        #expect(Duration.milliseconds(1500).nanoseconds == 1_500_000_000)
    }

    @Test func hexDigitsAreLowercaseAndPadded() {
        #expect([0x00, 0x0f, 0xa5, 0xff].hexString == "000fa5ff")
        #expect([UInt8]().hexString == "")
    }

    @Test func demoCheckpointIsValidSafetensors() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/demo.safetensors"
        try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: path))
        try Checkpoint.validate(path: path)
        let checkpoint = Checkpoint(path: path, sha256: try Checkpoint.sha256(ofFileAt: path))
        #expect(checkpoint.sha256.count == 64)
        #expect(checkpoint.title == "demo.safetensors [\(checkpoint.sha256.prefix(10))]")
        #expect(checkpoint.modelName == "demo")
    }

    @Test func refusesBrokenFiles() throws {
        let directory = try TemporaryDirectory()
        let cases: [(String, Data)] = [
            ("short.safetensors", Data([1, 2])),
            ("badjson.safetensors", Data([4, 0, 0, 0, 0, 0, 0, 0]) + Data("{{{{".utf8)),
            ("overflow.safetensors", Data([0xFF, 0xFF, 0, 0, 0, 0, 0, 0]) + Data("{}".utf8)),
            ("text.ckpt", Data("hello".utf8)),
            ("model.txt", Data("x".utf8)),
        ]
        for (name, data) in cases {
            let path = directory.path + "/" + name
            try data.write(to: URL(fileURLWithPath: path))
            #expect(throws: CheckpointError.self, "\(name)") { try Checkpoint.validate(path: path) }
        }
        // A tensor whose offsets run past the file is refused.
        let path = directory.path + "/truncated.safetensors"
        try Self.safetensors(header: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, dataBytes: 8).write(to: URL(fileURLWithPath: path))
        #expect(throws: CheckpointError.self) { try Checkpoint.validate(path: path) }
    }

    /// A safetensors file: its header's length, the header (padded to 8 bytes, as writers pad it) and
    /// `dataBytes` zero bytes of tensor data.
    static func safetensors(header text: String, dataBytes: Int) -> Data {
        var header = Data(text.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var file = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.append(contentsOf: $0) }
        return file + header + Data(count: dataBytes)
    }

    @Test func anEmbeddingsSizeIsReadFromItsHeader() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/style.safetensors"
        let header = #"{"emb_params":{"dtype":"F16","shape":[4,768],"data_offsets":[0,6144]}}"#
        try Self.safetensors(header: header, dataBytes: 6144).write(to: URL(fileURLWithPath: path))
        let size = try #require(Checkpoint.embeddingShape(ofFileAt: path))
        #expect(size.vectors == 4 && size.width == 768)
        try Data("not an embedding".utf8).write(to: URL(fileURLWithPath: directory.path + "/bad.safetensors"))
        #expect(Checkpoint.embeddingShape(ofFileAt: directory.path + "/bad.safetensors") == nil)
        #expect(Checkpoint.embeddingShape(ofFileAt: directory.path + "/missing.pt") == nil)
    }
}

@Suite struct ConfigurationTests {
    /// The reference worker's start, load and reload times reach its command line.
    @Test func referenceWorkerTimesReachItsCommand() throws {
        let config = try ServerConfiguration.load(yaml: """
            workers:
              reference: {startMilliseconds: 1500, loadMilliseconds: 300, reloadMilliseconds: 700}
            """)
        let command = try #require(config.workers.launchProfiles["reference"]?.command)
        for (flag, value) in [("--start-ms", "1500"), ("--load-ms", "300"), ("--reload-ms", "700")] {
            let index = try #require(command.firstIndex(of: flag), "\(flag) in \(command)")
            #expect(command[index + 1] == value)
        }
    }

    @Test func readsKeysOverDefaults() throws {
        let config = try ServerConfiguration.load(yaml: """
            port: 9000
            dataDir: /srv/sdbox
            webRoot: /srv/web
            limits:
              maxSteps: 80
            scheduler:
              maxInstances: 4
              gpus:
                - {index: 0, memoryMiB: 24576, name: RTX 4090}
              pool:
                idleTimeoutSeconds: 30
                gpuMemoryMiB: 10000
            workers:
              launch:
                command: [python, launch.py, --api, --nowebui, --port, "{port}", --ckpt, "{checkpoint}"]
                workingDirectory: /opt/a1111
              profiles:
                forge:
                  command: [python, launch.py, --port, "{port}"]
                  ownsPort: false
            """)
        #expect(config.http.port == 9000)
        #expect(config.dataDirectory == "/srv/sdbox")
        #expect(config.http.webRoot == "/srv/web")
        #expect(config.limits.generation.maxSteps == 80)
        #expect(config.scheduler.maxInstances == 4)
        #expect(config.http.host == "127.0.0.1")
        #expect(config.scheduler.gpus == [GPU(index: 0, name: "RTX 4090", memoryMiB: 24576)])
        #expect(config.scheduler.poolDefaults.idleTimeoutSeconds == 30)
        #expect(config.scheduler.poolDefaults.gpuMemoryMiB == 10000)
        #expect(config.scheduler.poolDefaults.maxInstances == 1)
        #expect(config.workers.defaultProfileName == "default")
        #expect(config.workers.launchProfiles["default"]?.resolvedCommand(["port": "7001", "checkpoint": "/m/x.safetensors"])
            == ["python", "launch.py", "--api", "--nowebui", "--port", "7001", "--ckpt", "/m/x.safetensors"])
        #expect(Set(config.workers.launchProfiles.keys) == ["default", "forge", "reference", "sdcpp"])
        #expect(config.workers.launchProfiles["default"]?.ownsPort == true && config.workers.launchProfiles["forge"]?.ownsPort == false)
        #expect(!config.workers.usesReferenceWorker)
        #expect(ServerConfiguration().workers.usesReferenceWorker)
    }

    @Test func builtInSdcppProfileRunsTheWorkerFromTheDataFolderUnlessRedefined() throws {
        let config = try ServerConfiguration.load(yaml: "workers:\n  defaultProfile: sdcpp")
        #expect(config.workers.defaultProfileName == "sdcpp")
        #expect(!config.workers.usesReferenceWorker)
        let values = WorkerLaunchProfile.placeholders(
            port: 7001, checkpoint: "/d/models/Stable-diffusion/x.safetensors", modelsDirectory: "/d/models", dataDirectory: "/d",
            executablePath: "/usr/bin/sdbox"
        )
        let command = try #require(config.workers.launchProfiles["sdcpp"]).resolved(values).command
        #expect(command.prefix(5) == ["/d/sdcpp-venv/bin/sdbox-sdcpp-worker", "--port", "7001", "--ckpt", "/d/models/Stable-diffusion/x.safetensors"])
        #expect(command.contains("/d/models"))

        let redefined = try ServerConfiguration.load(yaml: "workers:\n  profiles:\n    sdcpp:\n      command: [/opt/venv/bin/sdbox-sdcpp-worker, --port, \"{port}\"]")
        #expect(redefined.workers.launchProfiles["sdcpp"]?.command == ["/opt/venv/bin/sdbox-sdcpp-worker", "--port", "{port}"])
    }

    @Test(arguments: [
        ("prot: 1", "prot"),
        ("port: seventy", "port"),
        ("port: 70000", "port"),
        ("scheduler:\n  maxInstance: 2", "scheduler.maxInstance"),
        ("scheduler:\n  gpus:\n    - {index: 0}", "scheduler.gpus[0].memoryMiB"),
        ("scheduler:\n  pool:\n    minInstances: -1", "scheduler.pool.minInstances"),
        ("workers:\n  defaultProfile: forge", "workers.defaultProfile"),
        ("workers:\n  launch:\n    workingDirectory: /x", "workers.launch.command"),
        ("limits: 3", "limits"),
    ])
    func errorsNameTheKey(yaml: String, key: String) {
        do {
            _ = try ServerConfiguration.load(yaml: yaml)
            Issue.record("\(yaml) was accepted")
        } catch {
            #expect("\(error)".hasPrefix(key), "\(error)")
        }
    }

    @Test func emptyFileKeepsDefaults() throws {
        #expect(try ServerConfiguration.load(yaml: "") == ServerConfiguration())
    }
}

@Suite struct ShellWordsTests {
    @Test func splitsAsAShellDoes() throws {
        #expect(try ShellWords.split("--api --nowebui") == ["--api", "--nowebui"])
        #expect(try ShellWords.split("  --a  'b c'\t\"d \\\"e\\\" \\n\" f\\ g ''") == ["--a", "b c", "d \"e\" \\n", "f g", ""])
        #expect(try ShellWords.split("x'y'\"z\"") == ["xyz"])
        #expect(try ShellWords.split("") == [])
        for bad in ["'open", "\"open", "end\\"] {
            #expect(throws: ShellWords.Error.self, "\(bad)") { try ShellWords.split(bad) }
        }
    }
}

import Foundation
import ImageCodec
import SDBoxCore
import Synchronization

/// Settings of the reference worker's simulated pace.
public struct ReferencePace: Sendable {
    /// Time per sampling step for one 512x512 image.
    public var stepAt512: Duration
    /// Floor of the time per step, whatever the size.
    public var minimumStep: Duration

    public init(stepAt512: Duration = .milliseconds(50), minimumStep: Duration = .milliseconds(5)) {
        self.stepAt512 = stepAt512
        self.minimumStep = minimumStep
    }

    /// The time one step takes for `pixels` pixels in total (all images of a batch together).
    public func stepDuration(pixels: Int) -> Duration {
        max(minimumStep, stepAt512 * (Double(pixels) / Double(512 * 512)))
    }
}

/// A request the engine refuses, answered with HTTP 422 like A1111's validation errors.
public struct GenerationInputError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// The reference worker's engine: runs one generation at a time, like A1111, reporting per-step progress
/// and honouring interrupt and skip. Its images are test pictures, not diffusion.
public final class ReferenceEngine: Sendable {
    let current: Mutex<Checkpoint>
    let pace: ReferencePace
    /// The time a checkpoint takes to load when the worker switches to it.
    let loadTime: Duration
    let state = Mutex(JobState())
    let gate = GenerationGate()
    let options: Mutex<[String: JSONValue]>
    /// Whether the checkpoint is on the "GPU" (not parked in system RAM), and the time it takes to come back.
    let loaded = Mutex(true)
    let reloadTime: Duration

    struct JobState {
        var active = false
        var interrupted = false
        var skipped = false
        var jobCount = 0
        var jobNumber = 0
        var step = 0
        var steps = 0
        var timestamp = "0"
        var startedAt = ContinuousClock.now
        /// The running request, for previews.
        var request: ReferenceRequest?
    }

    public init(checkpoint: Checkpoint, pace: ReferencePace, loadTime: Duration = .zero, reloadTime: Duration = .zero) {
        self.current = Mutex(checkpoint)
        self.pace = pace
        self.loadTime = loadTime
        self.reloadTime = reloadTime
        self.options = Mutex([
            "sd_model_checkpoint": .string(checkpoint.title),
            "sd_checkpoint_hash": .string(checkpoint.sha256),
            "sd_vae": "Automatic",
            "CLIP_stop_at_last_layers": 1,
            "samples_format": "png",
            "eta_noise_seed_delta": 0,
        ])
    }

    // MARK: Options and progress

    public var currentOptions: [String: JSONValue] { options.withLock { $0 } }

    /// The checkpoint it holds.
    public var checkpoint: Checkpoint { current.withLock { $0 } }

    /// The checkpoints it could switch to: the files beside its own, as A1111 lists its models folder
    /// (only the one it holds has a known hash).
    public var checkpoints: [A1111.SDModel] {
        let holding = checkpoint
        let folder = (holding.path as NSString).deletingLastPathComponent
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { name in
            let lowered = name.lowercased()
            return !name.hasPrefix(".") && (lowered.hasSuffix(".safetensors") || lowered.hasSuffix(".ckpt"))
        }.sorted()
        return names.map { name in
            let path = folder + "/" + name
            return path == holding.path ? A1111.SDModel(checkpoint: holding) : A1111.SDModel(path: path)
        }
    }

    /// Switches to another checkpoint of its folder, after the generation under way, as A1111 does when
    /// `sd_model_checkpoint` is set: by file name or title (`name [hash]`), taking ``loadTime``. Throws
    /// when there is no such checkpoint.
    public func switchCheckpoint(to wanted: String) async throws {
        let name = wanted.range(of: " [", options: .backwards).map { String(wanted[..<$0.lowerBound]) } ?? wanted
        guard let model = checkpoints.first(where: { $0.title == wanted || ($0.filename as NSString).lastPathComponent == name || $0.model_name == name })
        else {
            throw GenerationInputError(description: "model '\(wanted)' not found")
        }
        await gate.enter()
        defer { gate.leave() }
        guard model.filename != checkpoint.path else { return await bringBack() }
        try Checkpoint.validate(path: model.filename)
        let loaded = Checkpoint(path: model.filename, sha256: try Checkpoint.sha256(ofFileAt: model.filename))
        try? await Task.sleep(for: loadTime)
        current.withLock { $0 = loaded }
        self.loaded.withLock { $0 = true }
        options.withLock { options in
            options["sd_model_checkpoint"] = .string(loaded.title)
            options["sd_checkpoint_hash"] = .string(loaded.sha256)
        }
    }

    /// Merges options other than the checkpoint's (``switchCheckpoint(to:)`` changes it).
    public func setOptions(_ changes: [String: JSONValue]) {
        options.withLock { current in
            for (key, value) in changes where key != "sd_model_checkpoint" && key != "sd_checkpoint_hash" {
                current[key] = value
            }
        }
    }

    /// The current job's progress; with `preview`, A1111's `current_image`: a small picture of the first
    /// image of the running batch as drawn so far (a PNG, base64), once a step is done.
    public func progress(preview: Bool = false) -> A1111.Progress {
        let (report, previewOf) = state.withLock { job -> (A1111.Progress, (ReferenceRequest, Int, Int)?) in
            guard job.active else { return (.idle, nil) }
            let fraction = job.jobCount == 0 || job.steps == 0
                ? 0 : (Double(job.jobNumber) + Double(job.step) / Double(job.steps)) / Double(job.jobCount)
            let elapsed = job.startedAt.duration(to: .now).seconds
            let eta = fraction > 0 ? elapsed / fraction - elapsed : 0
            let report = A1111.Progress(
                progress: min(fraction, 1),
                eta_relative: eta,
                state: A1111.State(
                    skipped: job.skipped, interrupted: job.interrupted, job: "txt2img", job_count: job.jobCount,
                    job_timestamp: job.timestamp, job_no: job.jobNumber, sampling_step: job.step, sampling_steps: job.steps
                ),
                textinfo: nil
            )
            guard preview, job.step > 0, let request = job.request else { return (report, nil) }
            return (report, (request, job.jobNumber * request.batchSize, job.step))
        }
        guard let (request, index, step) = previewOf else { return report }
        var withPreview = report
        withPreview.current_image = try? PNGCodec.encode(Self.preview(of: request, imageIndex: index, completedSteps: step)).base64EncodedString()
        return withPreview
    }

    /// A live preview: the test picture as drawn so far, at most 64 pixels on its longer side (A1111's
    /// previews are cheap approximations too).
    static func preview(of request: ReferenceRequest, imageIndex: Int, completedSteps: Int) -> PixelImage {
        let scale = min(1, 64 / Double(max(request.width, request.height)))
        return TestImageRenderer.render(
            prompt: request.prompt, seed: UInt64(bitPattern: request.seed(ofImage: imageIndex)),
            width: max(1, Int(Double(request.width) * scale)), height: max(1, Int(Double(request.height) * scale)),
            steps: request.steps, completedSteps: completedSteps
        )
    }

    public func interrupt() {
        state.withLock { if $0.active { $0.interrupted = true } }
    }

    public func skip() {
        state.withLock { if $0.active { $0.skipped = true } }
    }

    // MARK: Generation

    /// Runs a txt2img or img2img request and answers as A1111 does; a parked checkpoint comes back first.
    public func generate(kind: TaskKind, body: [String: JSONValue]) async throws -> A1111.GenerationResponse {
        let request = try ReferenceRequest(kind: kind, body: body, checkpoint: checkpoint)
        await gate.enter()
        defer { gate.leave() }
        await bringBack()
        return try await run(request)
    }

    // MARK: Parking

    /// Whether the checkpoint is loaded (not parked in system RAM).
    public var isLoaded: Bool { loaded.withLock { $0 } }

    /// Parks the checkpoint in system RAM, after the generation under way, as A1111's `unload_model_weights`.
    public func unload() async {
        await gate.enter()
        defer { gate.leave() }
        loaded.withLock { $0 = false }
    }

    /// Brings a parked checkpoint back (taking ``reloadTime``), after the generation under way; nothing
    /// when it is loaded.
    public func reload() async {
        await gate.enter()
        defer { gate.leave() }
        await bringBack()
    }

    /// Brings the checkpoint back if it is parked; call it holding the gate.
    func bringBack() async {
        guard !isLoaded else { return }
        try? await Task.sleep(for: reloadTime)
        loaded.withLock { $0 = true }
    }

    func run(_ request: ReferenceRequest) async throws -> A1111.GenerationResponse {
        let timestamp = Self.jobTimestamp()
        state.withLock {
            $0 = JobState(active: true, jobCount: request.iterations, steps: request.steps, timestamp: timestamp, request: request)
        }
        defer { state.withLock { $0.active = false } }
        let stepTime = pace.stepDuration(pixels: request.width * request.height * request.batchSize)
        var images: [String] = []
        var infotexts: [String] = []
        iterations: for iteration in 0..<request.iterations {
            state.withLock {
                $0.jobNumber = iteration
                $0.step = 0
                $0.skipped = false
            }
            var completed = 0
            for step in 1...request.steps {
                try await Task.sleep(for: stepTime)
                let (interrupted, skipped) = state.withLock { job in
                    job.step = step
                    return (job.interrupted, job.skipped)
                }
                completed = step
                if interrupted || skipped { break }
            }
            for index in 0..<request.batchSize {
                let n = iteration * request.batchSize + index
                let infotext = request.infotext(imageIndex: n)
                let image = try request.picture(imageIndex: n, completedSteps: completed)
                images.append(try PNGCodec.encode(image, text: [("parameters", infotext)]).base64EncodedString())
                infotexts.append(infotext)
            }
            if state.withLock({ $0.interrupted }) { break iterations }
        }
        let info = try String(decoding: JSONValue.object(request.info(infotexts: infotexts, timestamp: timestamp)).encoded(), as: UTF8.self)
        return A1111.GenerationResponse(images: images, parameters: .object(request.parameters), info: info)
    }

    static func jobTimestamp() -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMddHHmmss"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date())
    }
}

/// A first-in, first-out gate letting one generation run at a time.
final class GenerationGate: Sendable {
    struct State {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    let state = Mutex(State())

    func enter() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let entered = state.withLock { state -> Bool in
                if state.busy {
                    state.waiters.append(continuation)
                    return false
                }
                state.busy = true
                return true
            }
            if entered { continuation.resume() }
        }
    }

    func leave() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.busy = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}

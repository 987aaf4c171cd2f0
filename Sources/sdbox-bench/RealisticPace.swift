import Foundation
import SDBoxCore

/// A real worker's costs (process start 30 s, checkpoint load 5 s, reload from RAM 1 s, generation 3 s),
/// all multiplied by `scale` so that a run takes minutes, and the reference worker settings and requests
/// that reproduce them.
struct RealisticPace {
    let scale: Double

    static let startSeconds = 30.0
    static let loadSeconds = 5.0
    static let reloadSeconds = 1.0
    static let generationSeconds = 3.0
    /// Sampling steps per task; the per-step time makes the scaled generation.
    static let steps = 10
    /// Image side: small, so that drawing and encoding the reference worker's PNG adds little to the
    /// scaled generation time on a CPU-only machine.
    static let side = 256

    func milliseconds(_ seconds: Double) -> Int { Int((seconds * scale * 1000).rounded()) }
    var generationMilliseconds: Int { milliseconds(Self.generationSeconds) }

    /// The reference worker's `--step-ms` (its pace is given for 512x512 and scales with the pixels) for
    /// one generation of ``generationMilliseconds`` at ``side``.
    var stepMilliseconds: Int { max(1, generationMilliseconds / Self.steps * (512 * 512) / (Self.side * Self.side)) }

    /// The scaled costs, for a benchmark's heading.
    var summary: String {
        "every cost x\(scale): process start \(milliseconds(Self.startSeconds)) ms, load \(milliseconds(Self.loadSeconds)) ms, "
            + "reload \(milliseconds(Self.reloadSeconds)) ms, generation \(generationMilliseconds) ms"
    }

    /// The `workers:` section of an sdbox configuration whose reference workers keep this pace.
    var workersSection: String {
        """
        workers:
          reference:
            stepMilliseconds: \(stepMilliseconds)
            minimumStepMilliseconds: 1
            startMilliseconds: \(milliseconds(Self.startSeconds))
            loadMilliseconds: \(milliseconds(Self.loadSeconds))
            reloadMilliseconds: \(milliseconds(Self.reloadSeconds))
        """
    }

    /// A txt2img body for task `index` (its seed) at this pace's steps and size, on `model` when given.
    func body(_ index: Int, model: String?) -> Data {
        var body: [String: JSONValue] = ["prompt": .string("task \(index)"), "seed": .integer(Int64(index)), "steps": .integer(Int64(Self.steps)),
            "width": .integer(Int64(Self.side)), "height": .integer(Int64(Self.side)),
        ]
        if let model { body["stable_diffusion_model"] = .string(model) }
        return (try? JSONValue.object(body).encoded()) ?? Data()
    }
}

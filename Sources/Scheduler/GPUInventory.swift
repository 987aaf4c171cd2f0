import Foundation
import Subprocess

/// One GPU the scheduler may place workers on.
public struct GPU: Codable, Sendable, Equatable {
    /// The CUDA device index, given to workers as `CUDA_VISIBLE_DEVICES`.
    public var index: Int
    public var name: String
    /// Memory the scheduler may hand out on this GPU: its total less what other programs held when
    /// sdbox started.
    public var memoryMiB: Int

    public init(index: Int, name: String = "GPU", memoryMiB: Int) {
        self.index = index
        self.name = name
        self.memoryMiB = memoryMiB
    }
}

/// What the box offers workers: GPUs with memory to share out, or, with none, a number of CPU slots
/// (one worker each).
public struct GPUInventory: Codable, Sendable, Equatable {
    public enum Source: String, Codable, Sendable {
        /// Described by the configuration's `scheduler.gpus`.
        case configuration
        /// Read from `nvidia-smi`.
        case nvidiaSMI = "nvidia-smi"
        /// No GPU: CPU-only mode.
        case none
    }

    public var gpus: [GPU]
    /// Workers at once when there is no GPU.
    public var cpuSlots: Int
    public var source: Source

    public init(gpus: [GPU], cpuSlots: Int, source: Source) {
        self.gpus = gpus
        self.cpuSlots = cpuSlots
        self.source = source
    }

    /// The GPUs from the configuration when it lists any, else from `nvidia-smi` when it runs, else none
    /// (CPU-only, `cpuSlots` workers at once).
    public static func detect(configured: [GPU], cpuSlots: Int) async -> GPUInventory {
        if !configured.isEmpty {
            return GPUInventory(gpus: configured, cpuSlots: cpuSlots, source: .configuration)
        }
        if let output = await queryNvidiaSMI(), case let gpus = parseNvidiaSMI(output), !gpus.isEmpty {
            return GPUInventory(gpus: gpus, cpuSlots: cpuSlots, source: .nvidiaSMI)
        }
        return GPUInventory(gpus: [], cpuSlots: cpuSlots, source: .none)
    }

    /// Parses `nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv,noheader,nounits`.
    public static func parseNvidiaSMI(_ output: String) -> [GPU] {
        output.split(whereSeparator: \.isNewline).compactMap { line in
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count >= 4, let index = Int(fields[0]), let total = Int(fields[2]), let used = Int(fields[3]) else {
                return nil
            }
            return GPU(index: index, name: fields[1], memoryMiB: max(0, total - used))
        }
    }

    static func queryNvidiaSMI() async -> String? {
        let result = try? await Subprocess.run(
            .name("nvidia-smi"),
            arguments: ["--query-gpu=index,name,memory.total,memory.used", "--format=csv,noheader,nounits"],
            output: .string(limit: 1 << 16),
            error: .discarded
        )
        guard let result, result.terminationStatus.isSuccess else { return nil }
        return result.standardOutput
    }
}

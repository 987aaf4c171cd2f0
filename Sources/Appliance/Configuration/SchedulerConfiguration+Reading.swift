import SDBoxCore
import Scheduler

extension SchedulerConfiguration {
    /// Reads the `scheduler` section (the configuration's scheduler settings are this type itself) and
    /// refuses any other key.
    mutating func read(_ section: inout KeyReader) throws {
        maxInstances = try section.integer("maxInstances", in: 1...1024) ?? maxInstances
        maxAttempts = try section.integer("maxAttempts", in: 1...100) ?? maxAttempts
        maxStartFailures = try section.integer("maxStartFailures", in: 1...100) ?? maxStartFailures
        fairnessWaitSeconds = try section.integer("fairnessSeconds", in: 0...86400).map(Double.init) ?? fairnessWaitSeconds
        prioritySeconds = try section.integer("prioritySeconds", in: 0...86400).map(Double.init) ?? prioritySeconds
        livenessSeconds = try section.integer("livenessSeconds", in: 1...3600).map(Double.init) ?? livenessSeconds
        livenessFailures = try section.integer("livenessFailures", in: 1...100) ?? livenessFailures
        cpuSlots = try section.integer("cpuSlots", in: 1...1024) ?? cpuSlots
        hostMemoryMiB = try section.integer("hostMemoryMiB", in: 0...(1 << 30)) ?? hostMemoryMiB
        readAheadMiB = try section.integer("readAheadMiB", in: 0...(1 << 30)) ?? readAheadMiB
        for var gpu in try section.sectionList("gpus") ?? [] {
            gpus.append(
                GPU(
                    index: try gpu.integer("index", in: 0...255) ?? gpus.count,
                    name: try gpu.string("name") ?? "GPU",
                    memoryMiB: try gpu.integer("memoryMiB", in: 1...(1 << 24)) ?? { throw ConfigurationError("\(gpu.name("memoryMiB")): required") }()
                )
            )
            try gpu.finish()
        }
        if var pool = try section.section("pool") {
            poolDefaults = try pool.poolSettings().merged(over: poolDefaults)
            try pool.finish()
        }
        try section.finish()
    }
}

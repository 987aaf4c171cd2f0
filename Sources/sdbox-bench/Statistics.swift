import Foundation

/// Order statistics of a benchmark's samples.
extension Array where Element == Double {
    /// The value below which the fraction `p` (0...1) of the samples lie (nearest rank); 0 when empty.
    func percentile(_ p: Double) -> Double {
        let sorted = sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted[Swift.min(sorted.count - 1, Swift.max(0, Int((Double(sorted.count) * p).rounded(.up)) - 1))]
    }

    /// The median (the mean of the two middle samples for an even count); 0 when empty.
    var median: Double {
        let sorted = sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}

/// The machine's load average over the last minute, as `/proc/loadavg` gives it.
enum LoadAverage {
    static func now() -> String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?"
    }
}

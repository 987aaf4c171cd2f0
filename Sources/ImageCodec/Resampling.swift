import Foundation

/// How ``PixelImage/resampled(width:height:filter:)`` weighs the source pixels of each output pixel.
public enum ResamplingFilter: Sendable {
    /// The average of the source pixels an output pixel covers: the filter for shrinking (thumbnails).
    case box
    /// Lanczos with three lobes: sharp enlarging, as Pillow's `LANCZOS` that A1111's "Lanczos" upscaler uses.
    case lanczos3

    /// How far, in source pixels at scale 1, the filter reaches from a pixel's centre.
    var support: Double {
        switch self {
        case .box: 0.5
        case .lanczos3: 3
        }
    }

    func weight(_ x: Double) -> Double {
        switch self {
        case .box:
            return x > -0.5 && x <= 0.5 ? 1 : 0
        case .lanczos3:
            guard x != 0 else { return 1 }
            guard abs(x) < 3 else { return 0 }
            let px = Double.pi * x
            return 3 * sin(px) * sin(px / 3) / (px * px)
        }
    }
}

extension PixelImage {
    /// The image scaled to a new size with a separable filter, as Pillow's `resize`: each source row
    /// is filtered along its length once, into a small ring of rows, and output rows are weighted sums of
    /// those, so no full-size intermediate image is made.
    public func resampled(width newWidth: Int, height newHeight: Int, filter: ResamplingFilter) -> PixelImage {
        precondition(newWidth > 0 && newHeight > 0, "an image needs at least one pixel")
        if newWidth == width && newHeight == height { return self }
        let columns = Contributions(source: width, target: newWidth, filter: filter)
        let rows = Contributions(source: height, target: newHeight, filter: filter)
        let rowLength = newWidth * 3
        // Rows an output row reads are consecutive and at most `rows.taps`, so a ring of that many holds
        // them all, and a row pushed out is never needed again.
        var ring = [Float](repeating: 0, count: rows.taps * rowLength)
        var ringHolds = [Int](repeating: -1, count: rows.taps)
        var sum = [Float](repeating: 0, count: rowLength)
        let output = [UInt8](unsafeUninitializedCapacity: rowLength * newHeight) { output, count in
            pixels.withUnsafeBufferPointer { source in
                ring.withUnsafeMutableBufferPointer { ring in
                    sum.withUnsafeMutableBufferPointer { sum in
                        for y in 0..<newHeight {
                            for i in 0..<rowLength { sum[i] = 0 }
                            for tap in 0..<rows.count[y] {
                                let row = rows.first[y] + tap
                                let slot = row % rows.taps
                                let filtered = UnsafeMutableBufferPointer(rebasing: ring[(slot * rowLength)..<((slot + 1) * rowLength)])
                                if ringHolds[slot] != row {
                                    Self.resampleRow(UnsafeBufferPointer(rebasing: source[(row * width * 3)..<((row + 1) * width * 3)]), into: filtered, columns: columns)
                                    ringHolds[slot] = row
                                }
                                let weight = rows.weights[y * rows.taps + tap]
                                for i in 0..<rowLength { sum[i] += weight * filtered[i] }
                            }
                            let start = y * rowLength
                            for i in 0..<rowLength { output[start + i] = UInt8(min(max(sum[i] + 0.5, 0), 255)) }
                        }
                    }
                }
            }
            count = rowLength * newHeight
        }
        return PixelImage(width: newWidth, height: newHeight, pixels: output)
    }

    /// The size that fits inside a square of `side` pixels, keeping the aspect ratio; an image already
    /// inside keeps its size.
    public func size(fittingInside side: Int) -> (width: Int, height: Int) {
        let longest = max(width, height)
        guard longest > side else { return (width, height) }
        let scale = Double(side) / Double(longest)
        return (max(1, Int((Double(width) * scale).rounded())), max(1, Int((Double(height) * scale).rounded())))
    }

    /// One row filtered along its length.
    static func resampleRow(_ source: UnsafeBufferPointer<UInt8>, into output: UnsafeMutableBufferPointer<Float>, columns: Contributions) {
        columns.weights.withUnsafeBufferPointer { weights in
            for x in 0..<columns.count.count {
                var r: Float = 0, g: Float = 0, b: Float = 0
                var pixel = columns.first[x] * 3
                let base = x * columns.taps
                for tap in 0..<columns.count[x] {
                    let weight = weights[base + tap]
                    r += weight * Float(source[pixel])
                    g += weight * Float(source[pixel + 1])
                    b += weight * Float(source[pixel + 2])
                    pixel += 3
                }
                output[x * 3] = r
                output[x * 3 + 1] = g
                output[x * 3 + 2] = b
            }
        }
    }
}

/// For each output pixel along one axis: the first source pixel it reads, how many it reads, and their
/// normalised weights (Pillow's `precompute_coeffs`).
struct Contributions {
    let first: [Int]
    let count: [Int]
    /// `taps` weights per output pixel, the unused ones zero.
    let weights: [Float]
    let taps: Int

    init(source: Int, target: Int, filter: ResamplingFilter) {
        let scale = Double(source) / Double(target)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let taps = Int(support.rounded(.up)) * 2 + 1
        var first = [Int](repeating: 0, count: target)
        var count = [Int](repeating: 0, count: target)
        var weights = [Float](repeating: 0, count: target * taps)
        for x in 0..<target {
            let center = (Double(x) + 0.5) * scale
            let start = max(0, Int(center - support + 0.5))
            let end = min(source, Int(center + support + 0.5))
            var row = (start..<end).map { filter.weight((Double($0) - center + 0.5) / filterScale) }
            let total = row.reduce(0, +)
            if total != 0 { row = row.map { $0 / total } }
            first[x] = start
            count[x] = min(row.count, taps)
            for (tap, weight) in row.prefix(taps).enumerated() { weights[x * taps + tap] = Float(weight) }
        }
        self.first = first
        self.count = count
        self.weights = weights
        self.taps = taps
    }
}

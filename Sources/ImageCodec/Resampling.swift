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
    /// The image scaled to a new size with a separable filter (rows, then columns), as Pillow's `resize`.
    public func resampled(width newWidth: Int, height newHeight: Int, filter: ResamplingFilter) -> PixelImage {
        precondition(newWidth > 0 && newHeight > 0, "an image needs at least one pixel")
        if newWidth == width && newHeight == height { return self }
        let columns = Contributions(source: width, target: newWidth, filter: filter)
        let rows = Contributions(source: height, target: newHeight, filter: filter)
        var between = [Float](repeating: 0, count: newWidth * height * 3)
        var output = [UInt8](repeating: 0, count: newWidth * newHeight * 3)
        pixels.withUnsafeBufferPointer { source in
            between.withUnsafeMutableBufferPointer { between in
                Self.resampleRows(source, width: width, height: height, into: between, newWidth: newWidth, columns: columns)
            }
        }
        between.withUnsafeBufferPointer { between in
            output.withUnsafeMutableBufferPointer { output in
                Self.resampleColumns(between, rowLength: newWidth * 3, into: output, rows: rows)
            }
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

    static func resampleRows(
        _ source: UnsafeBufferPointer<UInt8>, width: Int, height: Int, into output: UnsafeMutableBufferPointer<Float>,
        newWidth: Int, columns: Contributions
    ) {
        columns.weights.withUnsafeBufferPointer { weights in
            for y in 0..<height {
                let sourceRow = y * width * 3
                let outputRow = y * newWidth * 3
                for x in 0..<newWidth {
                    var r: Float = 0, g: Float = 0, b: Float = 0
                    var pixel = sourceRow + columns.first[x] * 3
                    let base = x * columns.taps
                    for tap in 0..<columns.count[x] {
                        let weight = weights[base + tap]
                        r += weight * Float(source[pixel])
                        g += weight * Float(source[pixel + 1])
                        b += weight * Float(source[pixel + 2])
                        pixel += 3
                    }
                    output[outputRow + x * 3] = r
                    output[outputRow + x * 3 + 1] = g
                    output[outputRow + x * 3 + 2] = b
                }
            }
        }
    }

    static func resampleColumns(
        _ source: UnsafeBufferPointer<Float>, rowLength: Int, into output: UnsafeMutableBufferPointer<UInt8>, rows: Contributions
    ) {
        var sum = [Float](repeating: 0, count: rowLength)
        sum.withUnsafeMutableBufferPointer { sum in
            rows.weights.withUnsafeBufferPointer { weights in
                for y in 0..<rows.count.count {
                    for i in 0..<rowLength { sum[i] = 0 }
                    let base = y * rows.taps
                    for tap in 0..<rows.count[y] {
                        let weight = weights[base + tap]
                        let sourceRow = (rows.first[y] + tap) * rowLength
                        for i in 0..<rowLength { sum[i] += weight * source[sourceRow + i] }
                    }
                    let outputRow = y * rowLength
                    for i in 0..<rowLength { output[outputRow + i] = UInt8(min(max(sum[i].rounded(), 0), 255)) }
                }
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

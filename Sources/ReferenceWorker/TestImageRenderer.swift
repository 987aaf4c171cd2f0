import Foundation
import ImageCodec
import SDBoxCore

/// Draws the reference worker's test images: a deterministic picture of the prompt, seed, size and step
/// count (the same inputs always give the same pixels). It is a stand-in for diffusion, not diffusion.
public enum TestImageRenderer {
    /// Renders one image. `completedSteps` below `steps` gives the blurrier picture of an interrupted run.
    public static func render(prompt: String, seed: UInt64, width: Int, height: Int, steps: Int, completedSteps: Int? = nil) -> PixelImage {
        var random = SplitMix64(seed: seed ^ stableHash(prompt))
        let hue = Double(stableHash(prompt) % 360) / 360
        let waves = (0..<3).map { _ in (fx: random.unit() * 12 + 1, fy: random.unit() * 12 + 1, phase: random.unit() * 6.283) }
        let blobs = (0..<5).map { _ in
            (x: random.unit(), y: random.unit(), r: 0.08 + random.unit() * 0.25, hue: hue + random.unit() * 0.5)
        }
        let sharpness = Double(min(completedSteps ?? steps, steps)) / Double(max(steps, 1))
        var noise = SplitMix64(seed: seed &+ UInt64(steps))
        var image = PixelImage(width: width, height: height)
        image.pixels.withUnsafeMutableBufferPointer { pixels in
            for py in 0..<height {
                let y = Double(py) / Double(height)
                for px in 0..<width {
                    let x = Double(px) / Double(width)
                    var shade = 0.0
                    for wave in waves { shade += sin(wave.fx * x + wave.fy * y + wave.phase) }
                    var h = hue + shade * 0.05
                    var value = 0.55 + 0.15 * shade / 3
                    for blob in blobs {
                        let d = ((x - blob.x) * (x - blob.x) + (y - blob.y) * (y - blob.y)).squareRoot()
                        if d < blob.r {
                            h = blob.hue
                            value = 0.9 - d / blob.r * 0.4
                        }
                    }
                    let grain = (noise.unit() - 0.5) * (1.0 - sharpness) * 0.8
                    let (r, g, b) = hsv(h, 0.65, min(1, max(0, value + grain)))
                    let offset = (py * width + px) * 3
                    pixels[offset] = r
                    pixels[offset + 1] = g
                    pixels[offset + 2] = b
                }
            }
        }
        return image
    }

    /// FNV-1a over the UTF-8 bytes: stable across runs and machines, unlike `Hasher`.
    static func stableHash(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }

    static func hsv(_ h: Double, _ s: Double, _ v: Double) -> (UInt8, UInt8, UInt8) {
        let hue = (h - h.rounded(.down)) * 6
        let sector = Int(hue) % 6
        let f = hue - Double(Int(hue))
        let p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
        let (r, g, b): (Double, Double, Double) =
            switch sector {
            case 0: (v, t, p)
            case 1: (q, v, p)
            case 2: (p, v, t)
            case 3: (p, q, v)
            case 4: (t, p, v)
            default: (v, p, q)
            }
        return (UInt8(r * 255), UInt8(g * 255), UInt8(b * 255))
    }
}

extension SplitMix64 {
    /// A uniform value in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

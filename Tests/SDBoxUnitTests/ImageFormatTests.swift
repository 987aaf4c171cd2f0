import Foundation
import ImageCodec
import ReferenceWorker
import Testing

/// A lossless 3x2 WebP (red, green, blue / white, black, brown), made with Pillow.
let tinyWebP = Data(base64Encoded: "UklGRjoAAABXRUJQVlA4TC0AAAAvAkAAAC8gECBI8x9lQ0BQdN1yAgGCFP+R5j9AbHJsFShI24DF3VOyiP7H1QEA")!

@Suite struct ImageFormatTests {
    let picture = TestImageRenderer.render(prompt: "fox", seed: 3, width: 96, height: 64, steps: 4)

    @Test func recognisesFormatsBySignature() throws {
        #expect(ImageFormat.detect(try PNGCodec.encode(picture)) == .png)
        #expect(ImageFormat.detect(try JPEGCodec.encode(picture)) == .jpeg)
        #expect(ImageFormat.detect(tinyWebP) == .webp)
        #expect(ImageFormat.detect(Data("GIF89a".utf8)) == nil)
        #expect(ImageFormat(fileExtension: "JPEG") == .jpeg)
        #expect(ImageFormat(fileExtension: "gif") == nil)
    }

    @Test func jpegRoundTripIsClose() throws {
        let jpeg = try JPEGCodec.encode(picture, quality: 95)
        #expect(try ImageReader.header(of: jpeg) == ImageHeader(format: .jpeg, width: 96, height: 64))
        let decoded = try ImageReader.decode(jpeg, maxPixels: 96 * 64)
        #expect(decoded.width == 96 && decoded.height == 64)
        let error = zip(decoded.pixels, picture.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +) / picture.pixels.count
        #expect(error < 8, "mean error per channel \(error)")
    }

    @Test func decodesWebP() throws {
        #expect(try ImageReader.header(of: tinyWebP) == ImageHeader(format: .webp, width: 3, height: 2))
        let image = try ImageReader.decode(tinyWebP, maxPixels: 6)
        #expect(image.pixels == [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 128, 64, 32])
    }

    @Test func refusesDamagedImages() throws {
        let png = try PNGCodec.encode(picture)
        let jpeg = try JPEGCodec.encode(picture)
        for (name, broken) in [
            ("truncated PNG", png.prefix(png.count / 2)), ("truncated JPEG", jpeg.prefix(jpeg.count / 2)),
            ("truncated WebP", tinyWebP.prefix(30)), ("PNG header only", png.prefix(40)), ("text", Data("hello".utf8)),
        ] {
            #expect(throws: ImageCodecError.self, "\(name)") { try ImageReader.decode(Data(broken), maxPixels: 1 << 20) }
        }
        var flipped = png
        flipped[png.count / 2] ^= 0xFF  // a damaged compressed stream or CRC
        #expect(throws: ImageCodecError.self) { try ImageReader.decode(flipped, maxPixels: 1 << 20) }
    }

    @Test func refusesOversizedImagesFromTheirHeader() throws {
        for data in [try PNGCodec.encode(picture), try JPEGCodec.encode(picture)] {
            #expect(throws: ImageCodecError.self) { try ImageReader.decode(data, maxPixels: 96 * 64 - 1) }
            #expect(try ImageReader.decode(data, maxPixels: 96 * 64).width == 96)
        }
        #expect(throws: ImageCodecError.self) { try ImageReader.decode(tinyWebP, maxPixels: 5) }
    }
}

@Suite struct ResamplingTests {
    @Test func boxFilterAveragesAndKeepsFlatColours() {
        let flat = PixelImage(width: 40, height: 20, pixels: [UInt8](repeating: 0, count: 40 * 20 * 3).enumerated().map { [200, 100, 50][$0.offset % 3] })
        let small = flat.resampled(width: 10, height: 5, filter: .box)
        #expect(small.width == 10 && small.height == 5)
        #expect(small.pixels == [UInt8]((0..<50).flatMap { _ in [200, 100, 50] }))
        // A black and white checkerboard of 2x2 squares shrunk by 2 is grey.
        var checker = PixelImage(width: 4, height: 4)
        for y in 0..<4 {
            for x in 0..<4 where x % 2 == y % 2 { for c in 0..<3 { checker.pixels[(y * 4 + x) * 3 + c] = 255 } }
        }
        #expect(checker.resampled(width: 2, height: 2, filter: .box).pixels.allSatisfy { $0 == 128 })
    }

    @Test func lanczosEnlargesWithinRange() {
        let image = TestImageRenderer.render(prompt: "owl", seed: 1, width: 30, height: 20, steps: 2)
        let big = image.resampled(width: 75, height: 50, filter: .lanczos3)
        #expect(big.width == 75 && big.height == 50)
        // Smooth content stays close to the nearest-neighbour picture on average.
        let nearest = image.resized(width: 75, height: 50)
        let error = zip(big.pixels, nearest.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +) / big.pixels.count
        #expect(error < 20)
    }

    @Test func fittingAndCropping() {
        let image = PixelImage(width: 1024, height: 768)
        #expect(image.size(fittingInside: 256) == (256, 192))
        #expect(PixelImage(width: 100, height: 3000).size(fittingInside: 256) == (9, 256))
        #expect(PixelImage(width: 64, height: 64).size(fittingInside: 256) == (64, 64))
        var numbered = PixelImage(width: 3, height: 3)
        numbered.pixels = (0..<27).map(UInt8.init)
        #expect(numbered.cropped(x: 1, y: 1, width: 2, height: 1).pixels == [12, 13, 14, 15, 16, 17])
    }
}

@Suite struct ThumbnailTests {
    @Test func thumbnailIsAJPEGWithTheLongestSideAsked() throws {
        let picture = TestImageRenderer.render(prompt: "fox", seed: 3, width: 512, height: 384, steps: 4)
        let thumbnail = try Thumbnail(of: try PNGCodec.encode(picture), longestSide: 256)
        #expect((thumbnail.width, thumbnail.height) == (256, 192))
        #expect(thumbnail.jpeg.starts(with: [0xFF, 0xD8, 0xFF]))
        #expect(thumbnail.jpeg.suffix(2) == Data([0xFF, 0xD9]))
        let decoded = try JPEGCodec.decode(thumbnail.jpeg, maxPixels: 1 << 20)
        #expect(decoded.width == 256 && decoded.height == 192)
        // It looks like the picture: close to the picture shrunk the same way.
        let expected = picture.resampled(width: 256, height: 192, filter: .box)
        let error = zip(decoded.pixels, expected.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +) / expected.pixels.count
        #expect(error < 8)
    }

    @Test func smallImagesKeepTheirSize() throws {
        let thumbnail = try Thumbnail(of: tinyWebP, longestSide: 256)
        #expect((thumbnail.width, thumbnail.height) == (3, 2))
        let tall = try Thumbnail(of: try PNGCodec.encode(PixelImage(width: 50, height: 400)), longestSide: 100)
        #expect((tall.width, tall.height) == (13, 100))
    }
}

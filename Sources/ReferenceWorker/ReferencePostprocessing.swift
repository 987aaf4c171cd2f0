import Foundation
import ImageCodec
import SDBoxCore

/// The reference worker's extras tab: real upscaling of the given images, as A1111's
/// `extra-single-image` and `extra-batch-images` do with their built-in upscalers (`Lanczos`, `Nearest`;
/// `None` leaves the size alone). Face restoration fields are accepted and ignored.
extension ReferenceEngine {
    /// The largest image the reference worker reads or writes.
    static let maxPixels = 64 << 20

    /// Runs an extras request and answers as A1111: `{html_info, image}` or `{html_info, images}`.
    public func postprocess(kind: TaskKind, body: JSONValue) async throws -> JSONValue {
        let request: ExtrasRequest
        do {
            request = try ExtrasRequest(kind: kind, body: body, limits: GenerationLimits(maxSteps: 1, maxSide: 1 << 16, maxImages: 1000))
        } catch {
            throw GenerationInputError(description: error.message)
        }
        let sources: [(field: String, text: String)] =
            kind == .extraSingleImage
            ? [("image", body["image"]?.stringValue ?? "")]
            : (body["imageList"]?.arrayValue ?? []).enumerated().map { ("imageList[\($0)].data", $1["data"]?.stringValue ?? "") }
        await gate.enter()
        defer { gate.leave() }
        var images: [String] = []
        var infotext = ""
        for source in sources {
            let (png, text) = try upscale(source.text, field: source.field, request: request)
            images.append(png.base64EncodedString())
            infotext = text
        }
        let html = "<p>" + Self.escapeHTML(infotext) + "</p>"
        if kind == .extraSingleImage {
            return try JSONValue(encoding: A1111.ExtrasSingleImageResponse(html_info: html, image: images[0]))
        }
        return try JSONValue(encoding: A1111.ExtrasBatchImagesResponse(html_info: html, images: images))
    }

    /// One image upscaled, as a PNG that keeps the input's `parameters` infotext and adds A1111's
    /// `postprocessing` text; and that text.
    func upscale(_ text: String, field: String, request: ExtrasRequest) throws -> (png: Data, infotext: String) {
        let data = try ReferenceRequest.imageData(text, field: field)
        let image: PixelImage
        do {
            image = try ImageReader.decode(data, maxPixels: Self.maxPixels)
        } catch {
            throw GenerationInputError(description: "\(field): \(error)")
        }
        let size = request.outputSize(width: image.width, height: image.height)
        guard size.width * size.height <= Self.maxPixels else {
            throw GenerationInputError(description: "\(field): an output of \(size.width)x\(size.height) is too large")
        }
        var output = image
        var infotext: [String] = []
        if request.upscaler != "None" {
            let factor = request.resizeMode == 1
                ? max(Double(request.targetWidth) / Double(image.width), Double(request.targetHeight) / Double(image.height))
                : request.scale
            let width = max(size.width, Int((Double(image.width) * factor).rounded()))
            let height = max(size.height, Int((Double(image.height) * factor).rounded()))
            switch request.upscaler {
            case "Lanczos": output = image.resampled(width: width, height: height, filter: .lanczos3)
            case "Nearest": output = image.resized(width: width, height: height)
            default: throw GenerationInputError(description: "could not find upscaler named \(request.upscaler)")
            }
            if output.width != size.width || output.height != size.height {
                output = output.cropped(
                    x: (output.width - size.width) / 2, y: (output.height - size.height) / 2, width: size.width, height: size.height
                )
            }
            infotext.append(
                request.resizeMode == 1
                    ? "Postprocess upscale to: \(request.targetWidth)x\(request.targetHeight)"
                    : "Postprocess upscale by: \(ReferenceRequest.format(factor))"
            )
            infotext.append("Postprocess upscaler: \(request.upscaler)")
        }
        let text = infotext.joined(separator: ", ")
        var chunks: [(key: String, value: String)] = []
        if let parameters = PNGTextChunks.read(from: data)["parameters"] { chunks.append(("parameters", parameters)) }
        if !text.isEmpty { chunks.append(("postprocessing", text)) }
        return (try PNGCodec.encode(output, text: chunks), text)
    }

    static func escapeHTML(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
            .replacingOccurrences(of: "\n", with: "<br>\n")
    }
}

import Foundation
import ImageCodec
import SDBoxCore

/// A txt2img or img2img request as the reference worker reads it, with A1111's defaults filled in.
struct ReferenceRequest: Sendable {
    let kind: TaskKind
    let checkpoint: Checkpoint
    let prompt: String
    let negativePrompt: String
    /// The seed and A1111's variation subseed (random ones drawn when the request asks for -1).
    let seeds: (seed: Int64, subseed: Int64)
    var seed: Int64 { seeds.seed }
    var subseed: Int64 { seeds.subseed }
    let steps: Int
    let cfgScale: Double
    let width: Int
    let height: Int
    let batchSize: Int
    let iterations: Int
    /// The sampler's name and its schedule type, as A1111 reports them.
    let sampler: (name: String, schedule: String)
    let denoisingStrength: Double?
    /// An img2img request's picture to start from and its inpainting mask (white is repainted).
    let source: (image: PixelImage, mask: PixelImage?)?
    let parameters: [String: JSONValue]

    static let version = "sdbox-reference"

    init(kind: TaskKind, body: [String: JSONValue], checkpoint: Checkpoint) throws {
        func integer(_ key: String, _ fallback: Int64) -> Int64 { body[key]?.integerValue ?? fallback }
        self.kind = kind
        self.checkpoint = checkpoint
        self.prompt = body["prompt"]?.stringValue ?? ""
        self.negativePrompt = body["negative_prompt"]?.stringValue ?? ""
        let requestedSeed = integer("seed", -1)
        let requestedSubseed = integer("subseed", -1)
        self.seeds = (
            requestedSeed == -1 ? Int64.random(in: 0..<4_294_967_296) : requestedSeed,
            requestedSubseed == -1 ? Int64.random(in: 0..<4_294_967_296) : requestedSubseed
        )
        self.steps = Int(clamping: max(1, integer("steps", 50)))
        self.cfgScale = body["cfg_scale"]?.doubleValue ?? 7.0
        self.width = Int(clamping: max(8, integer("width", 512)))
        self.height = Int(clamping: max(8, integer("height", 512)))
        self.batchSize = Int(clamping: max(1, integer("batch_size", 1)))
        self.iterations = Int(clamping: max(1, integer("n_iter", 1)))
        self.sampler = (
            body["sampler_name"]?.stringValue ?? body["sampler_index"]?.stringValue ?? "Euler a", body["scheduler"]?.stringValue ?? "Automatic"
        )
        guard width * height * batchSize <= 64 << 20 else {
            throw GenerationInputError(description: "image of \(width)x\(height) x \(batchSize) is too large")
        }
        if kind == .img2img {
            self.denoisingStrength = body["denoising_strength"]?.doubleValue ?? 0.75
            guard let first = body["init_images"]?.arrayValue?.first?.stringValue else {
                throw GenerationInputError(description: "init_images must hold at least one image")
            }
            self.source = (
                try Self.decodeImage(first, field: "init_images"), try body["mask"]?.stringValue.map { try Self.decodeImage($0, field: "mask") }
            )
        } else {
            self.denoisingStrength = body["enable_hr"]?.boolValue == true ? body["denoising_strength"]?.doubleValue : nil
            self.source = nil
        }
        var parameters = body
        parameters["prompt"] = .string(prompt)
        parameters["negative_prompt"] = .string(negativePrompt)
        parameters["seed"] = .integer(requestedSeed)
        parameters["steps"] = .integer(Int64(steps))
        parameters["width"] = .integer(Int64(width))
        parameters["height"] = .integer(Int64(height))
        parameters["batch_size"] = .integer(Int64(batchSize))
        parameters["n_iter"] = .integer(Int64(iterations))
        parameters["cfg_scale"] = .number(cfgScale)
        parameters["sampler_name"] = .string(sampler.name)
        if kind == .img2img {
            parameters["denoising_strength"] = denoisingStrength.map { .number($0) } ?? .null
            if body["include_init_images"]?.boolValue != true {
                parameters["init_images"] = .null
                parameters["mask"] = .null
            }
        }
        self.parameters = parameters
    }

    /// Decodes a base64 image (PNG, JPEG or WebP), with or without a `data:` prefix.
    static func decodeImage(_ text: String, field: String) throws -> PixelImage {
        do {
            return try ImageReader.decode(try imageData(text, field: field), maxPixels: ReferenceEngine.maxPixels)
        } catch let error as ImageCodecError {
            throw GenerationInputError(description: "\(field): \(error)")
        }
    }

    /// The bytes of a base64 image, with or without a `data:` prefix.
    static func imageData(_ text: String, field: String) throws -> Data {
        var payload = Substring(text)
        if payload.hasPrefix("data:"), let comma = payload.firstIndex(of: ",") {
            payload = payload[payload.index(after: comma)...]
        }
        guard let data = Data(base64Encoded: String(payload), options: .ignoreUnknownCharacters) else {
            throw GenerationInputError(description: "\(field): invalid base64 image")
        }
        return data
    }

    func seed(ofImage index: Int) -> Int64 { seed + Int64(index) }

    /// The picture for image `index`, blended over the init image for img2img.
    func picture(imageIndex index: Int, completedSteps: Int) throws -> PixelImage {
        var image = TestImageRenderer.render(
            prompt: prompt, seed: UInt64(bitPattern: seed(ofImage: index)), width: width, height: height,
            steps: steps, completedSteps: completedSteps
        )
        guard let source, let strength = denoisingStrength else { return image }
        let base = source.image.resized(width: width, height: height)
        let maskPixels = source.mask?.resized(width: width, height: height).pixels
        for pixel in 0..<(width * height) {
            let inside = maskPixels.map { Int($0[pixel * 3]) + Int($0[pixel * 3 + 1]) + Int($0[pixel * 3 + 2]) > 381 } ?? true
            let weight = inside ? strength : 0
            for channel in 0..<3 {
                let offset = pixel * 3 + channel
                image.pixels[offset] = UInt8((Double(base.pixels[offset]) * (1 - weight) + Double(image.pixels[offset]) * weight).rounded())
            }
        }
        return image
    }

    /// A1111's infotext for image `index`.
    func infotext(imageIndex index: Int) -> String {
        var fields: [(String, String)] = [
            ("Steps", "\(steps)"), ("Sampler", sampler.name), ("Schedule type", sampler.schedule),
            ("CFG scale", Self.format(cfgScale)), ("Seed", "\(seed(ofImage: index))"), ("Size", "\(width)x\(height)"),
            ("Model hash", checkpoint.shortHash), ("Model", checkpoint.modelName),
        ]
        if let denoisingStrength { fields.append(("Denoising strength", Self.format(denoisingStrength))) }
        fields.append(("Version", Self.version))
        var text = prompt
        if !negativePrompt.isEmpty { text += "\nNegative prompt: \(negativePrompt)" }
        text += "\n" + fields.map { "\($0.0): \($0.1)" }.joined(separator: ", ")
        return text
    }

    /// The `info` object A1111 returns (as a JSON string) with a generation.
    func info(infotexts: [String], timestamp: String) -> [String: JSONValue] {
        let count = infotexts.count
        let seeds = (0..<count).map { JSONValue.integer(seed(ofImage: $0)) }
        let subseeds = (0..<count).map { JSONValue.integer(subseed + Int64($0)) }
        return [
            "prompt": .string(prompt),
            "all_prompts": .array(Array(repeating: .string(prompt), count: count)),
            "negative_prompt": .string(negativePrompt),
            "all_negative_prompts": .array(Array(repeating: .string(negativePrompt), count: count)),
            "seed": .integer(seed), "all_seeds": .array(seeds),
            "subseed": .integer(subseed), "all_subseeds": .array(subseeds),
            "subseed_strength": 0, "width": .integer(Int64(width)), "height": .integer(Int64(height)),
            "sampler_name": .string(sampler.name), "cfg_scale": .number(cfgScale), "steps": .integer(Int64(steps)),
            "batch_size": .integer(Int64(batchSize)), "restore_faces": false, "face_restoration_model": nil,
            "sd_model_name": .string(checkpoint.modelName), "sd_model_hash": .string(checkpoint.shortHash),
            "sd_vae_name": nil, "sd_vae_hash": nil, "seed_resize_from_w": -1, "seed_resize_from_h": -1,
            "denoising_strength": denoisingStrength.map { .number($0) } ?? .null,
            "extra_generation_params": [:], "index_of_first_image": 0,
            "infotexts": .array(infotexts.map { .string($0) }), "styles": [], "job_timestamp": .string(timestamp),
            "clip_skip": 1, "is_using_inpainting_conditioning": false, "version": .string(Self.version),
        ]
    }

    /// Numbers as A1111 prints them in infotext: no trailing `.0` noise beyond what Python's str() gives.
    static func format(_ value: Double) -> String {
        value == value.rounded() ? String(format: "%.1f", value) : String(value)
    }
}

/// A validated A1111 post-processing ("extras") request: `extra-single-image` (one `image`) or
/// `extra-batch-images` (an `imageList` of `{data, name}`), the body of A1111's `ExtrasSingleImageRequest` and
/// `ExtrasBatchImagesRequest` plus sdbox's `stable_diffusion_model` and `priority`.
///
/// Only upscaling is described here (the size of the output): face restoration fields are checked for
/// their type and passed on.
public struct ExtrasRequest: Sendable, Equatable {
    public let kind: TaskKind
    /// The checkpoint whose pool should run it, as the client wrote it; `nil` for the configured default.
    public let model: String?
    /// The body to send to the worker: the client's body without sdbox's own fields.
    public let workerBody: JSONValue
    /// 0: scale by ``scale``; 1: scale to ``targetWidth`` x ``targetHeight``.
    public let resizeMode: Int
    /// `upscaling_resize`, 1 to 8 (default 2).
    public let scale: Double
    public let targetWidth: Int
    public let targetHeight: Int
    /// With resize mode 1, whether the scaled image is cropped to the target size (default true).
    public let crop: Bool
    /// `upscaler_1`; `None` (A1111's default) leaves the size alone.
    public let upscaler: String
    public let priority: Int
    /// How many images the request holds.
    public let imageCount: Int

    public init(kind: TaskKind, body: JSONValue, limits: GenerationLimits = GenerationLimits()) throws(RequestValidationError) {
        guard kind == .extraSingleImage || kind == .extraBatchImages else {
            throw RequestValidationError(field: nil, message: "\(kind.rawValue) is not a post-processing request")
        }
        guard var fields = body.objectValue else {
            throw RequestValidationError(field: nil, message: "the request body must be a JSON object")
        }
        for (name, value) in fields {
            if let expected = Self.fields[name] ?? GenerationRequest.sdboxFieldTypes[name] {
                try expected.check(value, field: name)
            }
        }
        self.kind = kind
        self.model = fields["stable_diffusion_model"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        self.resizeMode = Int(clamping: fields["resize_mode"]?.integerValue ?? 0)
        self.scale = fields["upscaling_resize"]?.doubleValue ?? 2
        self.targetWidth = Int(clamping: fields["upscaling_resize_w"]?.integerValue ?? 512)
        self.targetHeight = Int(clamping: fields["upscaling_resize_h"]?.integerValue ?? 512)
        self.crop = fields["upscaling_crop"]?.boolValue ?? true
        self.upscaler = fields["upscaler_1"]?.stringValue ?? "None"
        self.priority = Int(clamping: fields["priority"]?.integerValue ?? 0)

        guard resizeMode == 0 || resizeMode == 1 else {
            throw RequestValidationError(field: "resize_mode", message: "field 'resize_mode' must be 0 (scale by) or 1 (scale to)")
        }
        guard (1...8).contains(scale) else {
            throw RequestValidationError(field: "upscaling_resize", message: "field 'upscaling_resize' must be between 1 and 8")
        }
        for (name, value) in [("upscaling_resize_w", targetWidth), ("upscaling_resize_h", targetHeight)] where !(1...limits.maxSide).contains(value) {
            throw RequestValidationError(field: name, message: "field '\(name)' must be between 1 and \(limits.maxSide)")
        }
        guard (-100...100).contains(priority) else {
            throw RequestValidationError(field: "priority", message: "field 'priority' must be between -100 and 100")
        }
        if kind == .extraSingleImage {
            guard let image = fields["image"]?.stringValue, !image.isEmpty else {
                throw RequestValidationError(field: "image", message: "field 'image' must hold an image (base64 or a stored key)")
            }
            self.imageCount = 1
        } else {
            guard let list = fields["imageList"]?.arrayValue, !list.isEmpty else {
                throw RequestValidationError(field: "imageList", message: "field 'imageList' must hold at least one {\"data\", \"name\"}")
            }
            guard list.count <= limits.maxImages else {
                throw RequestValidationError(field: "imageList", message: "field 'imageList' may hold at most \(limits.maxImages) images")
            }
            for (index, item) in list.enumerated() where item["data"]?.stringValue?.isEmpty ?? true {
                throw RequestValidationError(field: "imageList[\(index)].data", message: "field 'imageList[\(index)].data' must hold an image")
            }
            self.imageCount = list.count
        }
        for name in GenerationRequest.sdboxFields { fields.removeValue(forKey: name) }
        self.workerBody = .object(fields)
    }

    /// The size of the output for an input of `width` x `height`: scaled by ``scale`` (mode 0), or to
    /// cover the target size and then cropped to it (mode 1); unchanged with the `None` upscaler.
    public func outputSize(width: Int, height: Int) -> (width: Int, height: Int) {
        guard upscaler != "None" else { return (width, height) }
        let factor = resizeMode == 1 ? max(Double(targetWidth) / Double(width), Double(targetHeight) / Double(height)) : scale
        if resizeMode == 1 && crop { return (targetWidth, targetHeight) }
        return (max(1, Int((Double(width) * factor).rounded())), max(1, Int((Double(height) * factor).rounded())))
    }

    /// The fields of A1111's extras requests and their JSON types.
    static let fields: [String: FieldType] = [
        "resize_mode": .integer, "show_extras_results": .boolean, "gfpgan_visibility": .number,
        "codeformer_visibility": .number, "codeformer_weight": .number, "upscaling_resize": .number,
        "upscaling_resize_w": .integer, "upscaling_resize_h": .integer, "upscaling_crop": .boolean,
        "upscaler_1": .string, "upscaler_2": .string, "extras_upscaler_2_visibility": .number,
        "upscale_first": .boolean, "image": .string, "imageList": .array,
    ]
}

extension A1111 {
    /// The answer of `extra-single-image`: the processed image as base64 PNG and the infotext as HTML.
    public struct ExtrasSingleImageResponse: Codable, Sendable {
        public var html_info: String
        public var image: String

        public init(html_info: String, image: String) {
            self.html_info = html_info
            self.image = image
        }
    }

    /// The answer of `extra-batch-images`.
    public struct ExtrasBatchImagesResponse: Codable, Sendable {
        public var html_info: String
        public var images: [String]

        public init(html_info: String, images: [String]) {
            self.html_info = html_info
            self.images = images
        }
    }
}

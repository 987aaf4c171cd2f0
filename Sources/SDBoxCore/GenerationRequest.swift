/// The kinds of work sdbox runs on a worker.
public enum TaskKind: String, Codable, Sendable, CaseIterable {
    case txt2img
    case img2img
    /// Post-processing (upscaling) of one image: `/extra_images`, `/sdapi/v1/extra-single-image`.
    case extraSingleImage = "extra-single-image"
    /// Post-processing of several images: `/sdapi/v1/extra-batch-images`.
    case extraBatchImages = "extra-batch-images"
    /// A call to another worker endpoint (A1111's or an extension's), forwarded as it came; its method,
    /// path and body are the task's request (see ``PassthroughRequest``).
    case passthrough

    /// The kinds that draw pictures from a prompt, whose bodies ``GenerationRequest`` validates.
    public static let generations: [TaskKind] = [.txt2img, .img2img]

    /// The worker endpoint that runs this kind of task (a passthrough task names its own).
    public var workerPath: String { "/sdapi/v1/\(rawValue)" }
}

/// A request body that is not what the API accepts; `field` names the offending field when there is one.
public struct RequestValidationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let field: String?
    public let message: String

    public init(field: String?, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { message }
}

/// Explicit limits on what a single generation may ask for.
public struct GenerationLimits: Codable, Sendable, Equatable {
    /// Largest `steps`.
    public var maxSteps: Int
    /// Largest `width` and `height`, in pixels.
    public var maxSide: Int
    /// Largest `batch_size * n_iter`.
    public var maxImages: Int
    /// Largest text field (`prompt`, `negative_prompt`, `styles` together, ...), in UTF-8 bytes: what a
    /// request may store as text, since every queued task is kept on disk and in memory.
    public var maxPromptBytes: Int

    public init(maxSteps: Int = 150, maxSide: Int = 4096, maxImages: Int = 16, maxPromptBytes: Int = 64 << 10) {
        self.maxSteps = maxSteps
        self.maxSide = maxSide
        self.maxImages = maxImages
        self.maxPromptBytes = maxPromptBytes
    }
}

/// A validated txt2img or img2img request.
///
/// The body is an A1111 request plus sdbox's own fields (`stable_diffusion_model`, `sd_vae`, `priority`, the
/// original's `save_dir`, which images stored per user make moot, and `sdbox_info`, which only sdbox
/// writes). Every field A1111 defines is checked for its JSON type, so a wrong type is refused with the
/// field's name before any worker sees it; fields sdbox does not know travel to the worker as they are.
public struct GenerationRequest: Sendable, Equatable {
    public let kind: TaskKind
    /// The checkpoint asked for, as the client wrote it; `nil` when the client relies on its default.
    public let model: String?
    /// The body to send to the worker: the client's body without sdbox's own fields.
    public let workerBody: JSONValue
    public let steps: Int
    public let width: Int
    public let height: Int
    public let batchSize: Int
    public let iterations: Int
    /// The task's priority among its model's queued tasks (`priority`, default 0, from -100 to 100).
    public let priority: Int

    /// Fields that belong to sdbox and are not forwarded to workers.
    public static let sdboxFields: Set<String> = ["stable_diffusion_model", "sd_vae", "priority", "save_dir", TaskRecord.infoAdditionsKey]

    public init(kind: TaskKind, body: JSONValue, limits: GenerationLimits = GenerationLimits()) throws(RequestValidationError) {
        guard var fields = body.objectValue else {
            throw RequestValidationError(field: nil, message: "the request body must be a JSON object")
        }
        let schema = kind == .img2img ? Self.img2imgFields : Self.txt2imgFields
        for (name, value) in fields {
            if let expected = schema[name] ?? Self.sdboxFieldTypes[name] {
                try expected.check(value, field: name)
            }
            if !Self.imageFields.contains(name), schema[name] == .string || schema[name] == .stringArray,
                Self.textBytes(value) > limits.maxPromptBytes
            {
                throw RequestValidationError(
                    field: name, message: "field '\(name)' is over \(limits.maxPromptBytes) bytes of text (limits.maxPromptBytes)"
                )
            }
        }
        func integer(_ name: String, default value: Int) -> Int {
            fields[name]?.integerValue.map { Int(clamping: $0) } ?? value
        }
        self.kind = kind
        self.model = fields["stable_diffusion_model"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        self.steps = integer("steps", default: 50)
        self.width = integer("width", default: 512)
        self.height = integer("height", default: 512)
        self.batchSize = integer("batch_size", default: 1)
        self.iterations = integer("n_iter", default: 1)
        self.priority = integer("priority", default: 0)

        guard (1...limits.maxSteps).contains(steps) else {
            throw RequestValidationError(field: "steps", message: "field 'steps' must be between 1 and \(limits.maxSteps)")
        }
        for (name, value) in [("width", width), ("height", height)] where !(64...limits.maxSide).contains(value) {
            throw RequestValidationError(field: name, message: "field '\(name)' must be between 64 and \(limits.maxSide)")
        }
        guard batchSize >= 1, iterations >= 1, batchSize * iterations <= limits.maxImages else {
            throw RequestValidationError(
                field: "batch_size",
                message: "fields 'batch_size' and 'n_iter' must be at least 1 and their product at most \(limits.maxImages)"
            )
        }
        guard (-100...100).contains(priority) else {
            throw RequestValidationError(field: "priority", message: "field 'priority' must be between -100 and 100")
        }
        if kind == .img2img {
            guard let images = fields["init_images"]?.arrayValue, !images.isEmpty, images.allSatisfy({ $0.stringValue?.isEmpty == false }) else {
                throw RequestValidationError(field: "init_images", message: "field 'init_images' must hold at least one image")
            }
        }
        if let vae = fields["sd_vae"]?.stringValue, !vae.isEmpty {
            // A1111 has no `sd_vae` field: the VAE is chosen per request through `override_settings`.
            var overrides = fields["override_settings"]?.objectValue ?? [:]
            overrides["sd_vae"] = overrides["sd_vae"] ?? .string(vae)
            fields["override_settings"] = .object(overrides)
        }
        for name in Self.sdboxFields { fields.removeValue(forKey: name) }
        self.workerBody = .object(fields)
    }
}

/// The JSON type a request field must have. `null` is accepted everywhere, as A1111's pydantic models do.
public enum FieldType: Sendable {
    case string, integer, number, boolean, object, stringArray, array

    func check(_ value: JSONValue, field: String) throws(RequestValidationError) {
        let ok: Bool
        switch (self, value) {
        case (_, .null): ok = true
        case (.string, .string), (.boolean, .bool), (.object, .object), (.array, .array): ok = true
        case (.integer, _): ok = value.integerValue != nil
        case (.number, _): ok = value.doubleValue != nil
        case (.stringArray, .array(let items)): ok = items.allSatisfy { $0.stringValue != nil || $0.isNull }
        default: ok = false
        }
        guard ok else {
            throw RequestValidationError(field: field, message: "field '\(field)' must be \(self.phrase)")
        }
    }

    var phrase: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .number: "a number"
        case .boolean: "a boolean"
        case .object: "an object"
        case .stringArray: "an array of strings"
        case .array: "an array"
        }
    }
}

extension GenerationRequest {
    /// Text fields that carry images (base64), bounded by the image limits instead of ``GenerationLimits/maxPromptBytes``.
    static let imageFields: Set<String> = ["init_images", "mask", "latent_mask", "firstpass_image"]

    /// The UTF-8 bytes of a string, or of an array's strings together.
    static func textBytes(_ value: JSONValue) -> Int {
        switch value {
        case .string(let text): text.utf8.count
        case .array(let items): items.reduce(0) { $0 + ($1.stringValue?.utf8.count ?? 0) }
        default: 0
        }
    }

    static let sdboxFieldTypes: [String: FieldType] = ["stable_diffusion_model": .string, "sd_vae": .string, "priority": .integer]

    /// The fields of A1111's `StableDiffusionProcessingTxt2Img` API model and their JSON types.
    static let txt2imgFields: [String: FieldType] = [
        "prompt": .string, "negative_prompt": .string, "styles": .stringArray,
        "seed": .integer, "subseed": .integer, "subseed_strength": .number,
        "seed_resize_from_h": .integer, "seed_resize_from_w": .integer,
        "sampler_name": .string, "sampler_index": .string, "scheduler": .string,
        "batch_size": .integer, "n_iter": .integer, "steps": .integer, "cfg_scale": .number,
        "distilled_cfg_scale": .number,
        "width": .integer, "height": .integer, "restore_faces": .boolean, "tiling": .boolean,
        "do_not_save_samples": .boolean, "do_not_save_grid": .boolean, "eta": .number,
        "denoising_strength": .number, "s_min_uncond": .number, "s_churn": .number, "s_tmax": .number,
        "s_tmin": .number, "s_noise": .number, "override_settings": .object,
        "override_settings_restore_afterwards": .boolean, "refiner_checkpoint": .string,
        "refiner_switch_at": .number, "disable_extra_networks": .boolean, "firstpass_image": .string,
        "comments": .object, "enable_hr": .boolean, "firstphase_width": .integer, "firstphase_height": .integer,
        "hr_scale": .number, "hr_upscaler": .string, "hr_second_pass_steps": .integer,
        "hr_resize_x": .integer, "hr_resize_y": .integer, "hr_checkpoint_name": .string,
        "hr_sampler_name": .string, "hr_scheduler": .string, "hr_prompt": .string, "hr_negative_prompt": .string,
        "force_task_id": .string, "script_name": .string, "script_args": .array, "send_images": .boolean,
        "save_images": .boolean, "alwayson_scripts": .object, "infotext": .string,
    ]

    /// The fields of A1111's `StableDiffusionProcessingImg2Img` API model and their JSON types.
    static let img2imgFields: [String: FieldType] = txt2imgFields.merging(
        [
            "init_images": .stringArray, "resize_mode": .integer, "image_cfg_scale": .number, "mask": .string,
            "mask_blur_x": .integer, "mask_blur_y": .integer, "mask_blur": .integer, "mask_round": .boolean,
            "inpainting_fill": .integer, "inpaint_full_res": .boolean, "inpaint_full_res_padding": .integer,
            "inpainting_mask_invert": .integer, "initial_noise_multiplier": .number, "latent_mask": .string,
            "include_init_images": .boolean,
        ],
        uniquingKeysWith: { _, new in new }
    )
}

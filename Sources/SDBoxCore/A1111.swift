import Foundation

/// Wire types of the AUTOMATIC1111 web UI API (`modules/api/models.py`), shared by sdbox's A1111-compatible
/// routes and the reference worker. Field names are A1111's, so these encode to exactly what its clients expect.
public enum A1111 {
    /// `GET /sdapi/v1/progress`.
    public struct Progress: Codable, Sendable, Equatable {
        public var progress: Double
        public var eta_relative: Double
        public var state: State
        @ExplicitNull public var current_image: String?
        @ExplicitNull public var textinfo: String?

        public init(progress: Double, eta_relative: Double, state: State, current_image: String? = nil, textinfo: String? = nil) {
            self.progress = progress
            self.eta_relative = eta_relative
            self.state = state
            self.current_image = current_image
            self.textinfo = textinfo
        }

        /// The answer when nothing is running.
        public static let idle = Progress(progress: 0, eta_relative: 0, state: State())
    }

    /// The `state` object of a progress answer (A1111's `shared.state.dict()`).
    public struct State: Codable, Sendable, Equatable {
        public var skipped: Bool
        public var interrupted: Bool
        public var stopping_generation: Bool
        public var job: String
        public var job_count: Int
        public var job_timestamp: String
        public var job_no: Int
        public var sampling_step: Int
        public var sampling_steps: Int

        public init(
            skipped: Bool = false, interrupted: Bool = false, stopping_generation: Bool = false, job: String = "",
            job_count: Int = 0, job_timestamp: String = "0", job_no: Int = 0, sampling_step: Int = 0, sampling_steps: Int = 0
        ) {
            self.skipped = skipped
            self.interrupted = interrupted
            self.stopping_generation = stopping_generation
            self.job = job
            self.job_count = job_count
            self.job_timestamp = job_timestamp
            self.job_no = job_no
            self.sampling_step = sampling_step
            self.sampling_steps = sampling_steps
        }
    }

    /// The answer of txt2img and img2img: base64 PNGs, the parameters used, and `info` as a JSON *string*.
    public struct GenerationResponse: Codable, Sendable {
        public var images: [String]
        public var parameters: JSONValue
        public var info: String

        public init(images: [String], parameters: JSONValue, info: String) {
            self.images = images
            self.parameters = parameters
            self.info = info
        }
    }

    /// An entry of `GET /sdapi/v1/sd-models`.
    public struct SDModel: Codable, Sendable, Equatable {
        public var title: String
        public var model_name: String
        @ExplicitNull public var hash: String?
        @ExplicitNull public var sha256: String?
        public var filename: String
        @ExplicitNull public var config: String?

        public init(checkpoint: Checkpoint) {
            self.title = checkpoint.title
            self.model_name = checkpoint.modelName
            self.hash = checkpoint.shortHash
            self.sha256 = checkpoint.sha256
            self.filename = checkpoint.path
            self.config = nil
        }

        /// A checkpoint whose hash is not known yet: A1111 then titles it by file name alone.
        public init(path: String) {
            let fileName = (path as NSString).lastPathComponent
            self.title = fileName
            self.model_name = (fileName as NSString).deletingPathExtension
            self.hash = nil
            self.sha256 = nil
            self.filename = path
            self.config = nil
        }
    }

    /// An entry of `GET /sdapi/v1/samplers`.
    public struct Sampler: Codable, Sendable, Equatable {
        public var name: String
        public var aliases: [String]
        public var options: [String: String]
    }

    /// An entry of `GET /sdapi/v1/schedulers`.
    public struct Scheduler: Codable, Sendable, Equatable {
        public var name: String
        public var label: String
        @ExplicitNull public var aliases: [String]?
        public var default_rho: Double
        public var need_inner_model: Bool
    }

    /// An entry of `GET /sdapi/v1/upscalers`.
    public struct Upscaler: Codable, Sendable, Equatable {
        public var name: String
        @ExplicitNull public var model_name: String?
        @ExplicitNull public var model_path: String?
        @ExplicitNull public var model_url: String?
        @ExplicitNull public var scale: Double?

        public init(name: String, model_name: String?, model_path: String?, model_url: String?, scale: Double?) {
            self.name = name
            self.model_name = model_name
            self.model_path = model_path
            self.model_url = model_url
            self.scale = scale
        }
    }

    /// The samplers the reference worker offers (A1111 v1.10's k-diffusion and compvis samplers).
    public static let samplers: [Sampler] = [
        Sampler(name: "DPM++ 2M", aliases: ["k_dpmpp_2m"], options: ["scheduler": "karras"]),
        Sampler(name: "DPM++ SDE", aliases: ["k_dpmpp_sde"], options: ["scheduler": "karras", "second_order": "True", "brownian_noise": "True"]),
        Sampler(name: "DPM++ 2M SDE", aliases: ["k_dpmpp_2m_sde"], options: ["scheduler": "exponential", "brownian_noise": "True"]),
        Sampler(name: "Euler a", aliases: ["k_euler_a", "k_euler_ancestral"], options: ["uses_ensd": "True"]),
        Sampler(name: "Euler", aliases: ["k_euler"], options: [:]),
        Sampler(name: "LMS", aliases: ["k_lms"], options: [:]),
        Sampler(name: "Heun", aliases: ["k_heun"], options: ["second_order": "True"]),
        Sampler(name: "DPM2", aliases: ["k_dpm_2"], options: ["discard_next_to_last_sigma": "True", "second_order": "True"]),
        Sampler(name: "DPM2 a", aliases: ["k_dpm_2_a"], options: ["discard_next_to_last_sigma": "True", "uses_ensd": "True", "second_order": "True"]),
        Sampler(name: "DPM++ 2S a", aliases: ["k_dpmpp_2s_a"], options: ["uses_ensd": "True", "second_order": "True"]),
        Sampler(name: "DPM fast", aliases: ["k_dpm_fast"], options: ["uses_ensd": "True"]),
        Sampler(name: "DPM adaptive", aliases: ["k_dpm_ad"], options: ["uses_ensd": "True"]),
        Sampler(name: "Restart", aliases: ["restart"], options: ["scheduler": "karras", "second_order": "True"]),
        Sampler(name: "DDIM", aliases: ["ddim"], options: [:]),
        Sampler(name: "PLMS", aliases: ["plms"], options: [:]),
        Sampler(name: "UniPC", aliases: ["unipc"], options: [:]),
        Sampler(name: "LCM", aliases: ["k_lcm"], options: [:]),
    ]

    /// The schedulers the reference worker offers (A1111 v1.10's `sd_schedulers`).
    public static let schedulers: [Scheduler] = [
        Scheduler(name: "automatic", label: "Automatic", aliases: nil, default_rho: -1, need_inner_model: false),
        Scheduler(name: "uniform", label: "Uniform", aliases: nil, default_rho: -1, need_inner_model: true),
        Scheduler(name: "karras", label: "Karras", aliases: nil, default_rho: 7.0, need_inner_model: false),
        Scheduler(name: "exponential", label: "Exponential", aliases: nil, default_rho: -1, need_inner_model: false),
        Scheduler(name: "polyexponential", label: "Polyexponential", aliases: nil, default_rho: 1.0, need_inner_model: false),
        Scheduler(name: "sgm_uniform", label: "SGM Uniform", aliases: ["SGMUniform"], default_rho: -1, need_inner_model: true),
        Scheduler(name: "kl_optimal", label: "KL Optimal", aliases: nil, default_rho: -1, need_inner_model: false),
        Scheduler(name: "align_your_steps", label: "Align Your Steps", aliases: nil, default_rho: -1, need_inner_model: false),
        Scheduler(name: "simple", label: "Simple", aliases: nil, default_rho: -1, need_inner_model: true),
        Scheduler(name: "normal", label: "Normal", aliases: nil, default_rho: -1, need_inner_model: true),
        Scheduler(name: "ddim", label: "DDIM", aliases: nil, default_rho: -1, need_inner_model: true),
        Scheduler(name: "beta", label: "Beta", aliases: nil, default_rho: -1, need_inner_model: true),
    ]

    /// The upscalers every A1111 install has without downloading models.
    public static let upscalers: [Upscaler] = [
        Upscaler(name: "None", model_name: nil, model_path: nil, model_url: nil, scale: 4),
        Upscaler(name: "Lanczos", model_name: nil, model_path: nil, model_url: nil, scale: 4),
        Upscaler(name: "Nearest", model_name: nil, model_path: nil, model_url: nil, scale: 4),
    ]
}

extension A1111 {
    /// An entry of `GET /sdapi/v1/sd-vae`.
    public struct SDVae: Codable, Sendable, Equatable {
        public var model_name: String
        public var filename: String

        public init(model_name: String, filename: String) {
            self.model_name = model_name
            self.filename = filename
        }
    }

    /// An entry of `GET /sdapi/v1/loras`: the name it is called by in a prompt (`<lora:name:1>`), its file,
    /// and the training metadata A1111 reads from it (sdbox reports none).
    public struct Lora: Codable, Sendable, Equatable {
        public var name: String
        public var alias: String
        public var path: String
        public var metadata: JSONValue

        public init(name: String, path: String) {
            self.name = name
            self.alias = name
            self.path = path
            self.metadata = [:]
        }
    }

    /// `GET /sdapi/v1/embeddings`: textual inversions by name, `loaded` and `skipped` (for another model).
    public struct Embeddings: Codable, Sendable, Equatable {
        public var loaded: [String: Embedding]
        public var skipped: [String: Embedding]

        public init(loaded: [String: Embedding], skipped: [String: Embedding] = [:]) {
            self.loaded = loaded
            self.skipped = skipped
        }
    }

    /// One embedding: its training step and checkpoint when known (sdbox reads neither: nulls), the
    /// width of its vectors (`shape`) and how many it has (`vectors`), 0 when its file cannot be read.
    public struct Embedding: Codable, Sendable, Equatable {
        @ExplicitNull public var step: Int?
        @ExplicitNull public var sd_checkpoint: String?
        @ExplicitNull public var sd_checkpoint_name: String?
        public var shape: Int
        public var vectors: Int

        public init(shape: Int, vectors: Int) {
            self.shape = shape
            self.vectors = vectors
        }
    }

    /// `GET /sdapi/v1/scripts`: the names of the scripts each generation kind can run.
    public struct Scripts: Codable, Sendable, Equatable {
        public var txt2img: [String]
        public var img2img: [String]

        public init(txt2img: [String] = [], img2img: [String] = []) {
            self.txt2img = txt2img
            self.img2img = img2img
        }
    }

    /// The `{}` A1111 answers to a command (`interrupt`, `skip`).
    public struct Empty: Codable, Sendable, Equatable {
        public init() {}
    }
}

extension A1111 {
    /// An entry of `GET /sdapi/v1/prompt-styles`: a named prompt and negative prompt (A1111's styles file).
    public struct PromptStyle: Codable, Sendable, Equatable {
        public var name: String
        @ExplicitNull public var prompt: String?
        @ExplicitNull public var negative_prompt: String?

        public init(name: String, prompt: String?, negative_prompt: String?) {
            self.name = name
            self.prompt = prompt
            self.negative_prompt = negative_prompt
        }
    }

    /// An entry of `GET /sdapi/v1/latent-upscale-modes`.
    public struct LatentUpscaleMode: Codable, Sendable, Equatable {
        public var name: String
    }

    /// A1111's latent upscale modes (`shared.latent_upscale_modes`), the same on every install.
    public static let latentUpscaleModes: [LatentUpscaleMode] = [
        "Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)", "Latent (nearest)", "Latent (nearest-exact)",
    ].map { LatentUpscaleMode(name: $0) }

    /// `GET /sdapi/v1/memory`: the box's RAM (`free`, `used`, `total`, in bytes) and its GPUs' (`cuda`,
    /// A1111's `{system: {free, used, total}, ...}` or `{error}` without CUDA).
    public struct Memory: Codable, Sendable, Equatable {
        public var ram: [String: Int64]
        public var cuda: JSONValue

        public init(ram: [String: Int64], cuda: JSONValue) {
            self.ram = ram
            self.cuda = cuda
        }
    }

    /// An entry of `GET /sdapi/v1/face-restorers`.
    public struct FaceRestorer: Codable, Sendable, Equatable {
        public var name: String
        @ExplicitNull public var cmd_dir: String?

        public init(name: String, cmd_dir: String?) {
            self.name = name
            self.cmd_dir = cmd_dir
        }
    }

    /// An entry of `GET /sdapi/v1/realesrgan-models`.
    public struct RealESRGANModel: Codable, Sendable, Equatable {
        public var name: String
        @ExplicitNull public var path: String?
        @ExplicitNull public var scale: Int?
    }

    /// An entry of `GET /sdapi/v1/hypernetworks`.
    public struct Hypernetwork: Codable, Sendable, Equatable {
        public var name: String
        @ExplicitNull public var path: String?
    }

    /// An entry of `GET /sdapi/v1/extensions`.
    public struct Extension: Codable, Sendable, Equatable {
        public var name: String
        public var remote: String
        public var branch: String
        public var commit_hash: String
        public var version: String
        public var commit_date: String
        public var enabled: Bool
    }

    /// An entry of `GET /sdapi/v1/script-info`: a script and the arguments its UI offers.
    public struct ScriptInfo: Codable, Sendable, Equatable {
        public var name: String
        public var is_alwayson: Bool
        public var is_img2img: Bool
        public var args: [JSONValue]
    }

    /// The answer of `POST /sdapi/v1/interrogate`.
    public struct InterrogateResponse: Codable, Sendable, Equatable {
        public var caption: String

        public init(caption: String) {
            self.caption = caption
        }
    }
}

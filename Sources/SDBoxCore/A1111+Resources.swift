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

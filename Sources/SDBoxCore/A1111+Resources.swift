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

    /// One embedding: what A1111 knows once it has read it; sdbox, which does not read them, sends nulls.
    public struct Embedding: Codable, Sendable, Equatable {
        @ExplicitNull public var step: Int?
        @ExplicitNull public var sd_checkpoint: String?
        @ExplicitNull public var sd_checkpoint_name: String?
        @ExplicitNull public var shape: Int?
        @ExplicitNull public var vectors: Int?

        public init() {}
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

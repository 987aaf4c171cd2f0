/// Model files (`models`): uploads, and installs from links (Hugging Face, Civitai, any `https://` URL).
public struct ModelSettings: Sendable, Equatable {
    /// Largest model file accepted by upload or install (`models.maxUploadBytes`).
    public var maxUploadBytes: Int64 = 64 << 30
    /// The token sent to Hugging Face for gated and private repositories (`models.huggingFaceToken`, env
    /// `SDBOX_HUGGINGFACE_TOKEN`); sent only to ``huggingFaceURL``'s host, never logged.
    public var huggingFaceToken: String?
    /// The token sent to Civitai for downloads that need an account (`models.civitaiToken`, env
    /// `SDBOX_CIVITAI_TOKEN`); sent only to ``civitaiURL``'s host, never logged.
    public var civitaiToken: String?
    /// Hugging Face's address (`models.huggingFaceURL`): a mirror's in its place (as `HF_ENDPOINT` is).
    public var huggingFaceURL = "https://huggingface.co"
    /// Civitai's address (`models.civitaiURL`).
    public var civitaiURL = "https://civitai.com"
    /// Whether installs may download from loopback and private addresses, and follow redirects there
    /// (`models.allowPrivateNetworks`); off, as for webhooks (see ``OutboundTarget``).
    public var allowPrivateNetworks = false
    /// A PEM file of certificate authorities trusted for downloads besides the system's
    /// (`models.caCertificateFile`): a studio mirror with its own CA.
    public var caCertificateFile: String?
    /// Installs downloading at once (`models.maxConcurrentInstalls`); more wait their turn.
    public var maxConcurrentInstalls = 2

    public init() {}

    mutating func read(_ section: inout KeyReader) throws {
        maxUploadBytes = Int64(try section.integer("maxUploadBytes", in: 1024...(1 << 50)) ?? Int(maxUploadBytes))
        huggingFaceToken = try section.string("huggingFaceToken") ?? huggingFaceToken
        civitaiToken = try section.string("civitaiToken") ?? civitaiToken
        huggingFaceURL = try section.string("huggingFaceURL") ?? huggingFaceURL
        civitaiURL = try section.string("civitaiURL") ?? civitaiURL
        allowPrivateNetworks = try section.boolean("allowPrivateNetworks") ?? allowPrivateNetworks
        caCertificateFile = try section.string("caCertificateFile") ?? caCertificateFile
        maxConcurrentInstalls = try section.integer("maxConcurrentInstalls", in: 1...16) ?? maxConcurrentInstalls
        try section.finish()
    }
}

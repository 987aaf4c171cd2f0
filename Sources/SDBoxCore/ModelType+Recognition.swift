extension ModelType {
    /// The type a safetensors file plainly is, from its tensor names, or nil when the names do not say
    /// (a file of made-up names, a format not known here). Only plain signs count, so that a file is
    /// refused as the wrong type only when it is recognisably another one:
    /// - a LoRA (or LyCORIS) holds `lora_up`/`lora_down`, `lora_A`/`lora_B`, `hada_w` or `lokr_w` tensors;
    /// - a ControlNet model holds `control_model.` or `controlnet_` tensors;
    /// - a checkpoint holds the UNet, `model.diffusion_model.`;
    /// - a VAE holds only `encoder.`, `decoder.`, `quant_conv.` and `post_quant_conv.` tensors;
    /// - an embedding holds only `emb_params`, `string_to_param.*`, `clip_l` or `clip_g`.
    public static func recognised(fromTensorNames names: some Collection<String>) -> ModelType? {
        let tensors = names.filter { $0 != "__metadata__" }
        guard !tensors.isEmpty else { return nil }
        let loraMarks = ["lora_up", "lora_down", "lora_A.", "lora_B.", "hada_w", "lokr_w"]
        if tensors.contains(where: { name in loraMarks.contains { name.contains($0) } }) { return .lora }
        if tensors.contains(where: { $0.hasPrefix("control_model.") || $0.hasPrefix("controlnet_") }) { return .controlNet }
        if tensors.contains(where: { $0.hasPrefix("model.diffusion_model.") }) { return .stableDiffusion }
        let vaeParts = ["encoder.", "decoder.", "quant_conv.", "post_quant_conv."]
        if tensors.allSatisfy({ name in vaeParts.contains { name.hasPrefix($0) } }) { return .sdVae }
        if tensors.allSatisfy({ $0 == "emb_params" || $0.hasPrefix("string_to_param") || $0 == "clip_l" || $0 == "clip_g" }) { return .embedding }
        return nil
    }

    /// How an admin or a site names this type in a refusal.
    public var displayName: String {
        switch self {
        case .stableDiffusion: "checkpoint"
        case .sdVae: "VAE"
        case .lora: "LoRA"
        case .controlNet: "ControlNet model"
        case .embedding: "embedding"
        case .upscaler: "upscaler"
        }
    }
}

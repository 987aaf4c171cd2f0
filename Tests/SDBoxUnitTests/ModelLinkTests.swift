@testable import Appliance
import SDBoxCore
import Testing

/// Reading the links installs are given, the type a file's tensor names show, and the answers of sites.
@Suite struct ModelLinkTests {
    let settings = ModelSettings()

    @Test func huggingFaceLinksAreReadInEveryForm() throws {
        #expect(try ModelLink.parse("stabilityai/sdxl-turbo/sd_xl_turbo_1.0_fp16.safetensors", settings: settings)
            == .huggingFace(repository: "stabilityai/sdxl-turbo", path: "sd_xl_turbo_1.0_fp16.safetensors", revision: nil))
        #expect(try ModelLink.parse("https://huggingface.co/owner/repo/blob/v2/unet/diffusion model.safetensors", settings: settings)
            == .huggingFace(repository: "owner/repo", path: "unet/diffusion model.safetensors", revision: "v2"))
        #expect(try ModelLink.parse("https://huggingface.co/owner/repo/resolve/main/x.ckpt?download=true", settings: settings)
            == .huggingFace(repository: "owner/repo", path: "x.ckpt", revision: "main"))
        // Another page of the site is a plain URL; a shorthand needs a file in a repository.
        #expect(try ModelLink.parse("https://huggingface.co/owner/repo", settings: settings) == .url("https://huggingface.co/owner/repo"))
        #expect(throws: APIError.self) { try ModelLink.parse("owner/repo", settings: settings) }
        #expect(throws: APIError.self) { try ModelLink.parse("owner/../etc/passwd", settings: settings) }
    }

    @Test func civitaiLinksAreModelVersions() throws {
        #expect(try ModelLink.parse("https://civitai.com/models/4384?modelVersionId=128713", settings: settings) == .civitai(model: 4384, version: 128713))
        #expect(try ModelLink.parse("https://civitai.com/models/4384/dreamshaper", settings: settings) == .civitai(model: 4384, version: nil))
        #expect(try ModelLink.parse("https://civitai.com/api/download/models/128713?type=Model&format=SafeTensor", settings: settings) == .civitai(model: nil, version: 128713))
        var mirror = settings
        mirror.civitaiURL = "https://127.0.0.3:8443"
        #expect(try ModelLink.parse("https://127.0.0.3:8443/models/1", settings: mirror) == .civitai(model: 1, version: nil))
        #expect(try ModelLink.parse("https://127.0.0.3:9000/models/1", settings: mirror) == .url("https://127.0.0.3:9000/models/1"), "another port is another site")
    }

    @Test func otherLinksAreURLsOrRefused() throws {
        #expect(try ModelLink.parse("https://example.com/files/model.safetensors", settings: settings).fileName == "model.safetensors")
        #expect(try ModelLink.parse("https://example.com/download?id=3", settings: settings).fileName == nil)
        for bad in ["ftp://example.com/x.safetensors", "file:///etc/passwd", "", "https:///x.safetensors"] {
            #expect(throws: APIError.self, "\(bad)") { try ModelLink.parse(bad, settings: settings) }
        }
    }

    @Test func civitaiAnswersGiveTheFileItsHashAndType() throws {
        let version: JSONValue = [
            "id": 128713, "model": ["type": "LORA"],
            "files": [
                ["name": "notes.zip", "type": "Training Data", "downloadUrl": "https://civitai.com/api/download/models/128713?type=Training"],
                ["name": "detail.safetensors", "type": "Model", "primary": true, "sizeKB": 1.5,
                 "hashes": ["SHA256": .string(String(repeating: "AB", count: 32))], "downloadUrl": "https://civitai.com/api/download/models/128713"],
            ],
        ]
        let file = try ModelLink.civitaiFile(of: version, modelType: "LORA", site: "https://civitai.com")
        #expect(file == ModelLink.Resolved(
            downloadURL: "https://civitai.com/api/download/models/128713", fileName: "detail.safetensors",
            sha256: String(repeating: "ab", count: 32), size: 1536, type: .lora
        ))
        #expect(throws: ModelFetchError.self) { try ModelLink.civitaiFile(of: ["id": 1, "files": []], modelType: nil, site: "https://civitai.com") }
        #expect(ModelLink.civitaiType("Checkpoint") == .stableDiffusion && ModelLink.civitaiType("Poses") == nil)
    }

    @Test func tensorNamesTellTheTypeOnlyWhenPlain() {
        #expect(ModelType.recognised(fromTensorNames: ["model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.decoder.conv_in.weight"]) == .stableDiffusion)
        #expect(ModelType.recognised(fromTensorNames: ["lora_unet_down_blocks_0.lora_down.weight", "lora_unet_down_blocks_0.alpha"]) == .lora)
        #expect(ModelType.recognised(fromTensorNames: ["transformer.blocks.0.lora_A.weight"]) == .lora)
        #expect(ModelType.recognised(fromTensorNames: ["control_model.input_hint_block.0.weight"]) == .controlNet)
        #expect(ModelType.recognised(fromTensorNames: ["encoder.conv_in.weight", "decoder.conv_out.weight", "quant_conv.weight"]) == .sdVae)
        #expect(ModelType.recognised(fromTensorNames: ["emb_params"]) == .embedding)
        #expect(ModelType.recognised(fromTensorNames: ["clip_l", "clip_g"]) == .embedding)
        #expect(ModelType.recognised(fromTensorNames: ["w"]) == nil)
        #expect(ModelType.recognised(fromTensorNames: ["__metadata__"]) == nil)
    }

    @Test func contentRangesAndPublishedHashesAreRead() {
        #expect(ModelInstaller.contentRange("bytes 716800-2097239/2097240")! == (716800, 2097240))
        #expect(ModelInstaller.contentRange("bytes 0-9/*")! == (0, nil))
        #expect(ModelInstaller.contentRange("items 0-9/10") == nil)
        let sha = String(repeating: "0f", count: 32)
        #expect(ModelFetcher.sha256(fromETag: "\"\(sha)\"") == sha && ModelFetcher.sha256(fromETag: "W/\"\(sha.uppercased())\"") == sha)
        #expect(ModelFetcher.sha256(fromETag: "\"abc-123\"") == nil)
        #expect(ModelFetcher.hostAndPath("https://user:pw@cdn.example.com/f.safetensors?X-Amz-Signature=secret#x") == "https://cdn.example.com/f.safetensors")
    }
}

import Foundation
import SDBoxCore

extension ModelLink {
    /// What a link comes to once its site has been asked: the file to download and what the site says
    /// of it.
    package struct Resolved: Equatable, Sendable {
        package var downloadURL: String
        /// The file's name on the site, if the link or the site names one.
        package var fileName: String?
        /// The sha256 the site publishes (Civitai's API; Hugging Face's comes with the download).
        package var sha256: String?
        package var size: Int64?
        /// The type the site files the model under (Civitai's), if it says.
        package var type: ModelType?
    }

    /// The file a link names. Hugging Face and plain URLs need no question; a Civitai link is looked up in
    /// Civitai's API (`/api/v1/model-versions/<version>`, or `/api/v1/models/<id>` for its latest version).
    package func resolve(with fetcher: ModelFetcher, revision: String?) async throws -> Resolved {
        switch self {
        case .url(let url):
            return Resolved(downloadURL: url, fileName: fileName)
        case .huggingFace(let repository, let path, let linkRevision):
            let revision = revision ?? linkRevision ?? "main"
            let encoded = (repository.split(separator: "/") + [Substring("resolve"), Substring(revision)] + path.split(separator: "/"))
                .map { $0.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? String($0) }
            return Resolved(downloadURL: Self.trimmed(fetcher.settings.huggingFaceURL) + "/" + encoded.joined(separator: "/"), fileName: fileName)
        case .civitai(let model, let version):
            let site = Self.trimmed(fetcher.settings.civitaiURL)
            let versionInfo: JSONValue
            var modelType: String?
            if let version {
                versionInfo = try await fetcher.json("\(site)/api/v1/model-versions/\(version)")
                modelType = versionInfo["model"]?["type"]?.stringValue
            } else {
                let modelInfo = try await fetcher.json("\(site)/api/v1/models/\(model ?? 0)")
                guard let latest = modelInfo["modelVersions"]?.arrayValue?.first else {
                    throw ModelFetchError.permanent("Civitai model \(model ?? 0) has no version to download")
                }
                versionInfo = latest
                modelType = modelInfo["type"]?.stringValue
            }
            return try Self.civitaiFile(of: versionInfo, modelType: modelType, site: site)
        }
    }

    /// The file to download from a Civitai model version: its primary file, else its first model file.
    static func civitaiFile(of version: JSONValue, modelType: String?, site: String) throws -> Resolved {
        let files = version["files"]?.arrayValue ?? []
        guard let file = files.first(where: { $0["primary"]?.boolValue == true }) ?? files.first(where: { $0["type"]?.stringValue == "Model" }) ?? files.first,
            let name = file["name"]?.stringValue
        else {
            throw ModelFetchError.permanent("the Civitai model version has no file")
        }
        let id = version["id"]?.integerValue.map(String.init) ?? ""
        let url = file["downloadUrl"]?.stringValue ?? version["downloadUrl"]?.stringValue ?? "\(site)/api/download/models/\(id)"
        let sha256 = file["hashes"]?["SHA256"]?.stringValue.flatMap { $0.isSHA256Hex ? $0.lowercased() : nil }
        let size = file["sizeKB"]?.doubleValue.map { Int64(($0 * 1024).rounded()) }
        return Resolved(downloadURL: url, fileName: name, sha256: sha256, size: size, type: modelType.flatMap(civitaiType))
    }

    /// The type of Civitai's model type names, for those sdbox has a folder for.
    static func civitaiType(_ name: String) -> ModelType? {
        switch name.lowercased() {
        case "checkpoint": .stableDiffusion
        case "lora", "locon", "dora", "lycoris": .lora
        case "textualinversion": .embedding
        case "vae": .sdVae
        case "controlnet": .controlNet
        case "upscaler": .upscaler
        default: nil
        }
    }

    static func trimmed(_ site: String) -> String {
        site.hasSuffix("/") ? String(site.dropLast()) : site
    }
}

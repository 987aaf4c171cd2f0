import Foundation
import HTTPTypes
import SDBoxCore

/// What an admin asked to install (`POST /admin/models/install`'s `url`), read: a Hugging Face file, a
/// Civitai model version, or any other `https://` (or `http://`) URL.
///
/// Hugging Face files are given as `owner/repo/path/file.safetensors` or as a link to the file on the site
/// (`.../blob/<revision>/...` or `.../resolve/<revision>/...`); Civitai ones as a model page
/// (`/models/<id>`, with `?modelVersionId=<version>` for another than the latest) or a download link
/// (`/api/download/models/<version>`). Any other link on those sites is a plain URL.
package enum ModelLink: Equatable, Sendable {
    case huggingFace(repository: String, path: String, revision: String?)
    case civitai(model: Int?, version: Int?)
    case url(String)

    /// Reads `text` against the configured site addresses; 400 naming `url` for anything else.
    package static func parse(_ text: String, settings: ModelSettings) throws -> ModelLink {
        let text = text.trimmingCharacters(in: .whitespaces)
        guard let components = URLComponents(string: text), !text.isEmpty else { throw invalid(text, "it is not a URL") }
        guard let scheme = components.scheme?.lowercased() else { return try huggingFaceShorthand(text) }
        guard scheme == "https" || scheme == "http", let host = components.host?.lowercased(), !host.isEmpty else {
            throw invalid(text, "only http(s) URLs and Hugging Face paths (owner/repo/file.safetensors) can be installed")
        }
        let parts = components.path.split(separator: "/", omittingEmptySubsequences: true).map { $0.removingPercentEncoding ?? String($0) }
        if sameSite(components, settings.huggingFaceURL), parts.count >= 5, parts[2] == "blob" || parts[2] == "resolve" {
            return .huggingFace(repository: parts[0] + "/" + parts[1], path: parts[4...].joined(separator: "/"), revision: parts[3])
        }
        if sameSite(components, settings.civitaiURL) {
            if parts.count >= 4, parts[0...2] == ["api", "download", "models"], let version = Int(parts[3]) {
                return .civitai(model: nil, version: version)
            }
            if parts.count >= 2, parts[0] == "models", let model = Int(parts[1]) {
                let version = components.queryItems?.first { $0.name == "modelVersionId" }?.value.flatMap(Int.init)
                return .civitai(model: model, version: version)
            }
        }
        return .url(text)
    }

    /// `owner/repo/path/to/file.ext`.
    static func huggingFaceShorthand(_ text: String) throws -> ModelLink {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 3, parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw invalid(text, "a Hugging Face file is owner/repo/path/file.safetensors")
        }
        return .huggingFace(repository: parts[0] + "/" + parts[1], path: parts[2...].joined(separator: "/"), revision: nil)
    }

    /// Whether a URL is on the site whose address is `site` (same scheme, host and port).
    static func sameSite(_ components: URLComponents, _ site: String) -> Bool {
        guard let site = URLComponents(string: site) else { return false }
        return components.host?.lowercased() == site.host?.lowercased() && components.scheme?.lowercased() == site.scheme?.lowercased()
            && (components.port ?? defaultPort(components.scheme)) == (site.port ?? defaultPort(site.scheme))
    }

    static func defaultPort(_ scheme: String?) -> Int { scheme?.lowercased() == "http" ? 80 : 443 }

    static func invalid(_ text: String, _ why: String) -> APIError {
        APIError(.badRequest, "invalid model link", detail: "'\(text)': \(why)", extra: ["field": "url"])
    }

    /// The site the link is on, as installs report it.
    package var site: String {
        switch self {
        case .huggingFace: "huggingface"
        case .civitai: "civitai"
        case .url: "https"
        }
    }

    /// The file name the link names, if it names one.
    package var fileName: String? {
        switch self {
        case .huggingFace(_, let path, _): (path as NSString).lastPathComponent
        case .civitai: nil
        case .url(let url): URLComponents(string: url).map { ($0.path as NSString).lastPathComponent }.flatMap { ModelType.problem(withName: $0) == nil ? $0 : nil }
        }
    }
}

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import SDBoxCore

/// Why a download stopped: for good (the site refused, the file is wrong) or for now (the connection
/// dropped, the site is busy), in which case the install tries again from where it stopped.
package struct ModelFetchError: Error, Sendable, CustomStringConvertible {
    package let description: String
    /// Whether trying again may help.
    package let isTransient: Bool

    static func permanent(_ description: String) -> ModelFetchError { ModelFetchError(description: description, isTransient: false) }
    static func transient(_ description: String) -> ModelFetchError { ModelFetchError(description: description, isTransient: true) }
}

/// Makes the HTTP requests of installs from links: redirects are followed by hand (at most
/// ``maxRedirects``) so that every hop's address is checked (``OutboundTarget/modelDownloads``, unless
/// `models.allowPrivateNetworks` is on) and a site's token goes only to that site's own address (never to
/// the CDN it redirects to, never into a log).
package struct ModelFetcher: Sendable {
    let http: HTTPClient
    let settings: ModelSettings

    /// Redirects followed per request.
    static let maxRedirects = 5
    /// The largest site answer read as JSON (Civitai's API).
    static let maxJSONBytes = 4 << 20

    /// A client for downloads: no redirect of its own, a read timeout for stalled transfers, and the
    /// configured certificate authorities trusted besides the system's.
    package static func client(settings: ModelSettings) throws -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(15), read: .seconds(60))
        if let file = settings.caCertificateFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.additionalTrustRoots = [.file(file)]
            configuration.tlsConfiguration = tls
        }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// A response whose body is the file, after redirects.
    package struct Opened {
        package let response: HTTPClientResponse
        /// The URL that answered (the last hop).
        package let url: String
        /// The sha256 the site published for the file (Hugging Face's `X-Linked-Etag`), if it did.
        package let publishedSHA256: String?
    }

    /// GETs `url`, following redirects, asking for the bytes from `offset` on when it is not 0. Answers the
    /// first response that is not a redirect, whatever its status.
    package func open(_ url: String, from offset: Int64 = 0) async throws -> Opened {
        var current = url
        var published: String?
        for _ in 0...Self.maxRedirects {
            var request = try await request(for: current)
            if offset > 0 { request.headers.replaceOrAdd(name: "Range", value: "bytes=\(offset)-") }
            let response: HTTPClientResponse
            do {
                response = try await http.execute(request, timeout: .seconds(60))
            } catch {
                throw ModelFetchError.transient("\(Self.hostAndPath(current)): \(error)")
            }
            if published == nil, ModelLink.sameSite(URLComponents(string: current) ?? URLComponents(), settings.huggingFaceURL) {
                published = Self.sha256(fromETag: response.headers.first(name: "X-Linked-Etag"))
            }
            guard (300...399).contains(response.status.code), response.status.code != 304 else {
                return Opened(response: response, url: current, publishedSHA256: published)
            }
            guard let location = response.headers.first(name: "Location"),
                let next = URL(string: location, relativeTo: URL(string: current))?.absoluteString
            else {
                throw ModelFetchError.permanent("\(Self.hostAndPath(current)) answered \(response.status.code) without a Location")
            }
            current = next
        }
        throw ModelFetchError.permanent("more than \(Self.maxRedirects) redirects from \(Self.hostAndPath(url))")
    }

    /// GETs `url` and reads its answer as JSON (a site's API): 4xx is for good, 5xx for now.
    package func json(_ url: String) async throws -> JSONValue {
        let opened = try await open(url)
        let code = opened.response.status.code
        guard code == 200 else {
            let why = "\(Self.hostAndPath(opened.url)) answered \(code)" + (code == 401 || code == 403 ? " (a token may be needed: models.civitaiToken)" : "")
            throw code >= 500 || code == 429 ? ModelFetchError.transient(why) : ModelFetchError.permanent(why)
        }
        let body: ByteBuffer
        do {
            body = try await opened.response.body.collect(upTo: Self.maxJSONBytes)
        } catch {
            throw ModelFetchError.transient("\(Self.hostAndPath(opened.url)): \(error)")
        }
        guard let value = try? JSONValue(parsing: Data(body.readableBytesView)) else {
            throw ModelFetchError.permanent("\(Self.hostAndPath(opened.url)) did not answer JSON")
        }
        return value
    }

    /// The request for one hop: its address checked (an `http` one pinned to the address checked), the
    /// site's token when the hop is on that site.
    func request(for url: String) async throws -> HTTPClientRequest {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(), scheme == "https" || scheme == "http" else {
            throw ModelFetchError.permanent("\(url) is not an http(s) URL")
        }
        var target = url
        var hostHeader: String?
        if !settings.allowPrivateNetworks {
            switch await OutboundTarget.modelDownloads.check(url) {
            case .allowed(let pinned, let host):
                target = pinned
                hostHeader = host
            case .refused(let reason): throw ModelFetchError.permanent(reason)
            case .unresolved(let reason): throw ModelFetchError.transient(reason)
            }
        }
        var request = HTTPClientRequest(url: target)
        if let hostHeader { request.headers.replaceOrAdd(name: "Host", value: hostHeader) }
        request.headers.add(name: "User-Agent", value: "sdbox")
        if let token = settings.huggingFaceToken, ModelLink.sameSite(components, settings.huggingFaceURL) {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        } else if let token = settings.civitaiToken, ModelLink.sameSite(components, settings.civitaiURL) {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
        return request
    }

    /// A sha256 in an ETag (quoted, possibly weak), if it is one.
    static func sha256(fromETag etag: String?) -> String? {
        guard var text = etag?.trimmingCharacters(in: .whitespaces) else { return nil }
        if text.hasPrefix("W/") { text.removeFirst(2) }
        text = text.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        return text.isSHA256Hex ? text.lowercased() : nil
    }

    /// A URL without its query (where signed CDN links carry their signatures) for messages and logs.
    static func hostAndPath(_ url: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.query = nil
        components.fragment = nil
        components.user = nil
        components.password = nil
        return components.string ?? url
    }
}

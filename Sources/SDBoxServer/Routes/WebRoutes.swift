import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The admin web pages: `/` answers `index.html` and `/web/...` the files of the web root (HTML, CSS and
/// JavaScript modules, no build step). Files are revalidated on every use (`Cache-Control: no-cache` with
/// an ETag, so an unchanged file costs a 304), which keeps pages current after an upgrade.
struct WebRoutes {
    /// The folder holding `index.html` and its assets; nil when no web root was found, and `/` then
    /// answers 404 saying so.
    let root: String?
    let fileIO = FileIO()

    /// Where the assets are served.
    static let basePath = "/web"

    func register(on router: Router<SDBoxRequestContext>) {
        guard let root else {
            router.get("/") { _, _ -> Response in
                throw APIError(.notFound, "web pages not installed", detail: "no web root holds an index.html; set webRoot in the configuration")
            }
            return
        }
        // Serves /web/... only after the router found no route, so it can never shadow the API.
        router.add(
            middleware: FileMiddleware(root, urlBasePath: Self.basePath, cacheControl: CacheControl([(MediaType(type: .any, subType: "*"), [.noCache])]))
        )
        router.get("/") { _, context in
            let body = try await fileIO.loadFile(path: root + "/index.html", context: context)
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"], body: body)
        }
    }

    /// The web root to serve, in this order: the configured `webRoot` (which must exist); the packaged
    /// `/usr/share/sdbox/web`; `web/` in the source package that holds this executable (as
    /// `.build/debug/sdbox` does); `web/` in the current directory. Nil when none holds an `index.html`.
    static func locateRoot(configured: String?, executablePath: String, currentDirectory: String = FileManager.default.currentDirectoryPath) throws -> String? {
        func holdsPages(_ folder: String) -> Bool {
            FileManager.default.fileExists(atPath: folder + "/index.html")
        }
        if let configured {
            let folder = URL(fileURLWithPath: configured, relativeTo: URL(fileURLWithPath: currentDirectory, isDirectory: true)).standardizedFileURL.path
            guard holdsPages(folder) else { throw ConfigurationError("webRoot: \(folder) holds no index.html") }
            return folder
        }
        var candidates = [packagedRoot]
        var folder = URL(fileURLWithPath: executablePath).deletingLastPathComponent()
        while folder.path != "/" {
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path) {
                candidates.append(folder.appendingPathComponent("web").path)
                break
            }
            folder.deleteLastPathComponent()
        }
        candidates.append(URL(fileURLWithPath: currentDirectory).appendingPathComponent("web").path)
        return candidates.first(where: holdsPages)
    }

    /// Where the Debian package installs the pages.
    static let packagedRoot = "/usr/share/sdbox/web"
}

import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import NIOCore
import NIOHTTP1

// Hummingbird alone, with nothing of sdbox's (no middleware, no stores, no scheduler): the floors that
// sdbox's figures are measured against beside nginx and the worker called directly, so that a figure
// says how far sdbox is from its own HTTP stack's limit. Each runs in a process of its own, as sdbox does.

/// `sdbox-bench static-bytes`: answers every `GET /{name}` with the bytes of a file of a folder, read once
/// at start, as JSON. `control-plane` runs it beside sdbox and nginx on the same bytes.
struct StaticBytesServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "static-bytes",
        abstract: "Hummingbird alone serving the files of a folder from memory (the HTTP stack's limit, for control-plane).",
        shouldDisplay: false
    )

    @Option(help: "The loopback port to listen on.")
    var port: Int

    @Option(help: "The folder whose files are served, read once at start.")
    var folder: String

    func run() async throws {
        var files: [String: ByteBuffer] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
            files[name] = ByteBuffer(bytes: try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name)))
        }
        let bytes = files
        let router = Router()
        router.get("/healthz") { _, _ in HTTPResponse.Status.ok }
        router.get("/:name") { _, context -> Response in
            guard let name = context.parameters.get("name"), let body = bytes[name] else { return Response(status: .notFound) }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "static-bytes"))
        try await app.runService()
    }
}

/// `sdbox-bench forwarding-proxy`: passes each `POST` on to a worker with AsyncHTTPClient, as sdbox does,
/// and answers with the worker's answer: the least any server on this stack adds by standing between a
/// client and its worker (its body read, a second HTTP round trip, the answer collected and written).
/// `overhead` measures it beside the worker directly and sdbox.
struct ForwardingProxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forwarding-proxy",
        abstract: "Hummingbird and AsyncHTTPClient alone, forwarding POSTs to a worker (the stack's floor, for overhead).",
        shouldDisplay: false
    )

    @Option(help: "The loopback port to listen on.")
    var port: Int

    @Option(help: "The worker's base URL, e.g. http://127.0.0.1:7861.")
    var upstream: String

    func run() async throws {
        var configuration = HTTPClient.Configuration()
        configuration.timeout.read = .seconds(3600)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let upstream = upstream
        let router = Router()
        router.get("/healthz") { _, _ in HTTPResponse.Status.ok }
        router.post("**") { request, _ -> Response in
            var call = HTTPClientRequest(url: upstream + request.uri.path)
            call.method = .POST
            call.headers.add(name: "Content-Type", value: "application/json")
            call.body = .bytes(try await request.body.collect(upTo: 64 << 20))
            let answer = try await http.execute(call, timeout: .seconds(3600))
            let body = try await answer.body.collect(upTo: 256 << 20)
            return Response(
                status: .init(code: Int(answer.status.code)), headers: [.contentType: answer.headers.first(name: "Content-Type") ?? "application/json"],
                body: .init(byteBuffer: body)
            )
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "forwarding-proxy"))
        do {
            try await app.runService()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}

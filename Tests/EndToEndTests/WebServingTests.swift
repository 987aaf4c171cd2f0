import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// The web pages as files over HTTP, and the task listing the pages depend on, through the real binary.
@Suite(.serialized, .timeLimit(.minutes(2))) struct WebServingTests {
    @Test func servesThePagesWithTheirTypesAndRevalidation() async throws {
        let server = try await ServerProcess()
        defer { server.destroy() }
        let index = try await server.response(.GET, "/")
        #expect(index.status == 200)
        #expect(String(decoding: index.body, as: UTF8.self).contains(#"<script type="module" src="/web/js/app.js">"#))
        #expect(index.headers["content-type"].first == "text/html; charset=utf-8")
        #expect(index.headers["cache-control"].first == "no-cache")

        // Every module the pages import is served as JavaScript, found by following the imports from app.js.
        var pending = ["/web/js/app.js"]
        var seen: Set<String> = []
        while let path = pending.popLast() {
            guard seen.insert(path).inserted else { continue }
            let module = try await server.response(.GET, path)
            #expect(module.status == 200, "\(path)")
            #expect(module.headers["content-type"].first == "text/javascript", "\(path)")
            #expect(module.headers["cache-control"].first == "no-cache", "\(path)")
            let source = String(decoding: module.body, as: UTF8.self)
            for match in source.matches(of: /from '(\.{1,2}\/[^']+)'/) {
                pending.append(URL(string: String(match.1), relativeTo: URL(string: "http://x" + path))!.path)
            }
        }
        #expect(seen.count >= 12, "\(seen.sorted())")
        #expect(try await server.response(.GET, "/web/css/app.css").headers["content-type"].first == "text/css")
        #expect(try await server.response(.GET, "/web/favicon.svg").headers["content-type"].first == "image/svg+xml")

        // An unchanged file costs a 304.
        let etag = try #require(try await server.response(.GET, "/web/js/app.js").headers["etag"].first)
        #expect(try await server.response(.GET, "/web/js/app.js", headers: [("If-None-Match", etag)]).status == 304)

        // Nothing outside the web root, and the API is untouched.
        let escape = try await server.response(.GET, "/web/../Package.swift")
        #expect(escape.status == 400 || escape.status == 404)
        #expect(!String(decoding: escape.body, as: UTF8.self).contains("swift-tools-version"))
        let (missing, body) = try await server.json(.GET, "/web/nope.js")
        #expect(missing == 404)
        #expect(body["error"] == "not found")
        let (models, list) = try await server.json(.GET, "/models")
        #expect(models == 200 && list.arrayValue != nil)
    }

    @Test func aConfiguredWebRootWithoutPagesStopsTheStart() async throws {
        do {
            let server = try await ServerProcess(config: "webRoot: /nonexistent-sdbox-web")
            server.destroy()
            Issue.record("sdbox started without its configured web root")
        } catch {
            #expect("\(error)".contains("webRoot: /nonexistent-sdbox-web holds no index.html"), "\(error)")
        }
    }

    @Test func tasksAreListedByStateModelAndTimeInPages() async throws {
        let server = try await ServerProcess(
            config: "workers:\n  reference: {stepMilliseconds: 2, minimumStepMilliseconds: 1}",
            models: ["alpha.safetensors": DemoCheckpoint.contents(), "beta.safetensors": DemoCheckpoint.contents()]
        )
        defer { server.destroy() }
        var ids: [String] = []
        for index in 0..<5 {
            let body: JSONValue = ["stable_diffusion_model": index % 2 == 0 ? "alpha" : "beta", "prompt": "p", "steps": 2, "width": 64, "height": 64]
            let (status, answer) = try await server.json(.POST, "/txt2img", body)
            #expect(status == 200, "\(answer)")
            ids.append(try #require(answer["taskId"]?.stringValue))
        }
        let newest = Array(ids.reversed())

        // Pages of two follow `next` to the end.
        var listed: [String] = []
        var path = "/tasks?limit=2"
        while true {
            let (status, page) = try await server.json(.GET, path)
            #expect(status == 200)
            listed += (page["tasks"]?.arrayValue ?? []).compactMap { $0["taskId"]?.stringValue }
            guard let next = page["next"]?.stringValue else { break }
            path = "/tasks?limit=2&before=\(next)"
        }
        #expect(listed == newest)

        let (_, alpha) = try await server.json(.GET, "/tasks?model=alpha.safetensors&state=succeeded,failed")
        #expect((alpha["tasks"]?.arrayValue ?? []).compactMap { $0["taskId"]?.stringValue } == [ids[4], ids[2], ids[0]])
        let (_, queued) = try await server.json(.GET, "/tasks?state=queued")
        #expect(queued["tasks"]?.arrayValue?.isEmpty == true)
        let (_, future) = try await server.json(.GET, "/tasks?since=2999-01-01T00:00:00Z")
        #expect(future["tasks"]?.arrayValue?.isEmpty == true)
        let (_, past) = try await server.json(.GET, "/tasks?before=2001-01-01T00:00:00.000Z")
        #expect(past["tasks"]?.arrayValue?.isEmpty == true)
        let (_, recent) = try await server.json(.GET, "/tasks?since=\(Int(Date().timeIntervalSince1970) - 600)")
        #expect(recent["tasks"]?.arrayValue?.count == 5)

        for (query, field) in [("state=done", "state"), ("since=yesterday", "since"), ("before=soon", "before")] {
            let (status, error) = try await server.json(.GET, "/tasks?\(query)")
            #expect(status == 400, "\(query)")
            #expect(error["field"] == .string(field), "\(error)")
        }

        // One task with what it was asked.
        let (status, task) = try await server.json(.GET, "/tasks/\(ids[1])")
        #expect(status == 200)
        #expect(task["taskId"] == .string(ids[1]))
        #expect(task["model"] == "beta.safetensors")
        #expect(task["status"] == "succeeded")
        #expect(task["request"]?["width"] == 64)
        #expect(task["startedAt"]?.doubleValue != nil && task["finishedAt"]?.doubleValue != nil)
        #expect(try await server.json(.GET, "/tasks/nope").0 == 404)
    }
}

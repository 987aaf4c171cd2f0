import Foundation
import Hummingbird
import HummingbirdTesting
import SDBoxCore
import Testing

@testable import Appliance
@testable import SDBoxServer

/// The routes' contracts, in process: statuses and the JSON error shape for what a client gets wrong, and
/// who may call each route.
@Suite struct RouteContractTests {
    /// Sends one request through the router and returns the status and the JSON answer.
    func answer(_ bench: RouterBench, _ method: HTTPRequest.Method, _ uri: String, body: String? = nil) async throws -> (HTTPResponse.Status, JSONValue) {
        try await Application(router: bench.router).test(.router) { client in
            try await client.execute(uri: uri, method: method, body: body.map { ByteBuffer(string: $0) }) { response in
                (response.status, (try? JSONValue(parsing: response.body.readableBytesView)) ?? .null)
            }
        }
    }

    @Test func clientMistakesGetTheirStatusAndAJSONError() async throws {
        let bench = try RouterBench()
        let cases: [(HTTPRequest.Method, String, String?, HTTPResponse.Status)] = [
            (.post, "/txt2img", "{not json", .badRequest),
            (.post, "/txt2img", #"{"steps": 0}"#, .badRequest),
            (.post, "/txt2img", #"{"prompt": 7}"#, .badRequest),
            (.post, "/txt2img", "{\"comments\": " + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}", .badRequest),
            (.get, "/tasks/nosuchtask/result", nil, .notFound),
            (.get, "/tasks/../result", nil, .notFound),
            (.post, "/sdapi/v1/server-kill", "{}", .forbidden),
            (.post, "/sdapi/v1/%73erver-kill", "{}", .forbidden),
            (.post, "/sdapi/v1/train/embedding", "{}", .notFound),
            (.get, "/sdapi/v1/x/%zz", nil, .badRequest),
            (.post, "/sdapi/v1/png-info", #"{"picture": "x"}"#, .badRequest),
        ]
        for (method, uri, body, status) in cases {
            let (got, json) = try await answer(bench, method, uri, body: body)
            #expect(got == status, "\(method) \(uri): \(got) \(json)")
            #expect(json["error"]?.stringValue?.isEmpty == false && json["detail"] != nil, "\(method) \(uri): \(json)")
            #expect(json["message"]?.stringValue?.isEmpty == false && json["code"]?.integerValue == Int64(status.code), "\(method) \(uri): \(json)")
        }
    }

    @Test func a1111AnswersWriteEveryKeyIncludingNulls() async throws {
        let bench = try RouterBench()
        let (status, upscalers) = try await answer(bench, .get, "/sdapi/v1/upscalers")
        #expect(status == .ok)
        for upscaler in upscalers.arrayValue ?? [] {
            for key in ["name", "model_name", "model_path", "model_url", "scale"] {
                #expect(upscaler.objectValue?.keys.contains(key) == true, "upscaler without '\(key)': \(upscaler)")
            }
        }
        #expect(upscalers.arrayValue?.first?["model_url"] == .null)
        let (_, progress) = try await answer(bench, .get, "/sdapi/v1/progress")
        #expect(progress.objectValue?.keys.sorted() == ["current_image", "eta_relative", "progress", "state", "textinfo"])
        #expect(progress["current_image"] == .null && progress["textinfo"] == .null)
        let (_, schedulers) = try await answer(bench, .get, "/sdapi/v1/schedulers")
        #expect(schedulers.arrayValue?.allSatisfy { $0.objectValue?.keys.contains("aliases") == true } == true)
    }

    @Test func explicitNullsReadBackAsAbsent() throws {
        let written = try JSONEncoder().encode(A1111.Progress.idle)
        #expect(String(decoding: written, as: UTF8.self).contains("\"current_image\":null"))
        #expect(try JSONDecoder().decode(A1111.Progress.self, from: written) == .idle)
        let withoutKeys = #"{"progress": 0.5, "eta_relative": 1, "state": {"skipped": false, "interrupted": false, "stopping_generation": false, "job": "", "job_count": 0, "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}}"#
        let progress = try JSONDecoder().decode(A1111.Progress.self, from: Data(withoutKeys.utf8))
        #expect(progress.current_image == nil && progress.progress == 0.5)
    }

    @Test func corsPreflightsAreAnsweredAndAllowedOriginsReadAnswers() async throws {
        var configuration = ServerConfiguration()
        configuration.auth.required = true
        configuration.cors = try ServerConfiguration.load(yaml: "cors: {allowOrigins: ['https://studio.example']}").cors
        let bench = try RouterBench(configuration: configuration)
        try await Application(router: bench.router).test(.router) { client in
            let preflight: HTTPFields = [.origin: "https://studio.example", .accessControlRequestMethod: "POST", .accessControlRequestHeaders: "authorization, taskid"]
            try await client.execute(uri: "/txt2img", method: .options, headers: preflight) { response in
                #expect(response.status == .noContent, "a preflight needs no key")
                #expect(response.headers[.accessControlAllowOrigin] == "https://studio.example")
                #expect(response.headers[.accessControlAllowHeaders] == "authorization, taskid")
                #expect(response.headers[.accessControlAllowMethods]?.contains("POST") == true)
            }
            // An answer, even a refusal, is readable by the allowed origin, with the headers clients read.
            try await client.execute(uri: "/tasks", method: .get, headers: [.origin: "https://studio.example"]) { response in
                #expect(response.status == .unauthorized)
                #expect(response.headers[.accessControlAllowOrigin] == "https://studio.example")
                #expect(response.headers[.accessControlExposeHeaders]?.contains("taskId") == true)
            }
            try await client.execute(uri: "/tasks", method: .get, headers: [.origin: "https://elsewhere.example"]) { response in
                #expect(response.headers[.accessControlAllowOrigin] == nil)
            }
            try await client.execute(uri: "/txt2img", method: .options, headers: [.origin: "https://elsewhere.example", .accessControlRequestMethod: "POST"]) { response in
                #expect(response.status != .noContent && response.headers[.accessControlAllowOrigin] == nil)
            }
        }
        #expect(throws: ConfigurationError.self) { try ServerConfiguration.load(yaml: "cors: {allowOrigins: ['https://x.example/path']}") }
    }

    @Test func publicRoutesAnswerWithoutAKeyAndNoOthersDo() async throws {
        var configuration = ServerConfiguration()
        configuration.auth.required = true
        let bench = try RouterBench(configuration: configuration)
        #expect(try await answer(bench, .get, "/healthz").0 == .ok)
        #expect(try await answer(bench, .get, "/openapi.json").0 == .ok)
        for (method, uri) in [(HTTPRequest.Method.get, "/tasks"), (.post, "/txt2img"), (.get, "//admin/keys"), (.get, "/metrics"), (.post, "/healthz")] {
            let (status, json) = try await answer(bench, method, uri, body: "{}")
            #expect(status == .unauthorized && json["error"] == "API key required", "\(method) \(uri): \(status)")
        }
    }

    @Test func everyRouteHasTheAccessItsPathSays() throws {
        let bench = try RouterBench()
        var counts: [RouteAccess: Int] = [:]
        for route in bench.router.routes {
            let path = "\(route.path)"
            let access = RouteAccess(route: path, method: route.method)
            counts[access, default: 0] += 1
            if path.hasPrefix("/admin/") || ["/workers", "/metrics", "/batch_update_sd_resource", "/del/sd/functions", "/list/sdapi/functions", "/restart"].contains(path) {
                #expect(access == .admin, "\(route.method) \(path)")
            }
            if access == .public {
                let publicRead = route.method == .get && ["/", "/healthz", "/readyz", "/openapi.json", "/objects/**"].contains(path)
                #expect(publicRead || (route.method == .post && path == "/login"), "\(route.method) \(path) is public")
            }
        }
        #expect(counts[.public] == 6, "\(counts)")
        #expect((counts[.admin] ?? 0) > 15 && (counts[.user] ?? 0) > 20, "\(counts)")
    }
}

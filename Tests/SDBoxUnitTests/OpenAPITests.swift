import Foundation
import Hummingbird
import Logging
import ObjectStore
import Prometheus
import SDBoxCore
@testable import Appliance
@testable import SDBoxServer
import Scheduler
import Storage
import Testing

/// `/openapi.json` stays true: every route the router has is in it, and nothing else is.
@Suite struct OpenAPITests {
    @Test func everyRouteIsDescribed() async throws {
        let bench = try RouterBench()
        let (router, configuration) = (bench.router, bench.configuration)
        // Route patterns in OpenAPI's notation: `:id` and `{id}` become `{id}`, the object catch-all `{key}`,
        // passthrough catch-alls `{path}`.
        func normalized(_ path: String) -> String {
            path.split(separator: "/", omittingEmptySubsequences: false).map { part in
                if part == "**" { return path.hasPrefix("/objects/") ? "{key}" : "{path}" }
                if part.hasPrefix(":") { return "{\(part.dropFirst())}" }
                return String(part)
            }.joined(separator: "/")
        }
        let routes = Set(router.routes.map { "\($0.method.rawValue.lowercased()) \(normalized("\($0.path)"))" })
            .filter { !$0.hasSuffix(" /") && !$0.contains(" /web") }
        let document = OpenAPIDocument.make(configuration)
        var described: Set<String> = []
        for (path, item) in document["paths"]?.objectValue ?? [:] {
            for method in item.objectValue?.keys ?? [:].keys { described.insert("\(method) \(path)") }
        }
        #expect(routes.count > 40)
        #expect(routes.subtracting(described).isEmpty, "routes missing from /openapi.json: \(routes.subtracting(described).sorted())")
        #expect(described.subtracting(routes).isEmpty, "described but not routed: \(described.subtracting(routes).sorted())")
    }

    @Test func schemasCarryTheConfiguredLimits() {
        var configuration = ServerConfiguration()
        configuration.limits.generation.maxSteps = 42
        let document = OpenAPIDocument.make(configuration)
        let steps = document["paths"]?["/txt2img"]?["post"]?["requestBody"]?["content"]?["application/json"]?["schema"]?["properties"]?["steps"]
        #expect(steps?["maximum"] == 42)
    }
}

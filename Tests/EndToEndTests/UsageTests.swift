import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// What finished tasks used, added up by model, day or user, checked against the tasks that ran.
@Suite(.serialized, .timeLimit(.minutes(2))) struct UsageTests {
    @Test func usageAddsUpTheTasksThatRanByModelDayAndUser() async throws {
        let server = try await ServerProcess(config: """
            workers:
              reference: {stepMilliseconds: 20, minimumStepMilliseconds: 20}
            """, models: ["alpha.safetensors": DemoCheckpoint.contents(), "beta.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        for body: JSONValue in [
            ["stable_diffusion_model": "alpha", "prompt": "a", "steps": 2, "width": 64, "height": 64],
            ["stable_diffusion_model": "alpha", "prompt": "b", "steps": 2, "width": 64, "height": 64],
            ["stable_diffusion_model": "beta", "prompt": "c", "steps": 3, "width": 64, "height": 64, "batch_size": 2],
        ] {
            let (status, answer) = try await server.json(.POST, "/txt2img", body)
            #expect(status == 200 && answer["status"] == "succeeded", "\(answer)")
        }
        let (status, byModel) = try await server.json(.GET, "/admin/usage?groupBy=model")
        #expect(status == 200 && byModel["groupBy"] == "model")
        let rows = Dictionary(uniqueKeysWithValues: (byModel["rows"]?.arrayValue ?? []).compactMap { row in row["key"]?.stringValue.map { ($0, row) } })
        #expect(rows["alpha.safetensors"]?["tasks"] == 2 && rows["alpha.safetensors"]?["images"] == 2)
        #expect(rows["alpha.safetensors"]?["pixelSteps"] == .integer(64 * 64 * 2 * 2))
        #expect(rows["beta.safetensors"]?["images"] == 2 && rows["beta.safetensors"]?["pixelSteps"] == .integer(64 * 64 * 3 * 2))
        #expect(byModel["totals"]?["tasks"] == 3 && byModel["totals"]?["images"] == 4)
        #expect((byModel["totals"]?["workerSeconds"]?.doubleValue ?? 0) > 0.1, "each generation took 40 to 60 ms of a worker")
        // By day (UTC) and by user: one row each here.
        let (_, byDay) = try await server.json(.GET, "/admin/usage?groupBy=day")
        let today = ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
        #expect(byDay["rows"]?.arrayValue?.map { $0["key"] } == [.string(today)])
        #expect(try await server.json(.GET, "/admin/usage").1["rows"]?[0]?["key"] == "default")
        // A period with no task, a user with none, and a wrong grouping.
        #expect(try await server.json(.GET, "/admin/usage?from=2999-01-01T00:00:00Z").1["totals"]?["tasks"] == 0)
        #expect(try await server.json(.GET, "/admin/usage?user=nobody").1["rows"] == [])
        #expect(try await server.json(.GET, "/admin/usage?groupBy=week").1["field"] == "groupBy")
        // The same figures in /metrics, per user and model.
        let metrics = String(decoding: try await server.request(.GET, "/metrics").1, as: UTF8.self)
        #expect(metrics.contains(#"sdbox_usage_images_total{user="default",model="beta.safetensors"} 2"#) || metrics.contains(#"sdbox_usage_images_total{model="beta.safetensors",user="default"} 2"#), "\(metrics)")
        #expect(metrics.contains("sdbox_usage_pixel_steps_total{") && metrics.contains("sdbox_usage_worker_seconds_total{"))
        // CSV for a spreadsheet.
        let answer = try await server.response(.GET, "/admin/usage?groupBy=model", headers: [("Accept", "text/csv")])
        #expect(answer.status == 200 && answer.headers.first(name: "Content-Type")?.hasPrefix("text/csv") == true)
        let lines = String(decoding: answer.body, as: UTF8.self).split(separator: "\r\n").map(String.init)
        #expect(lines.first == "model,tasks,images,pixel_steps,worker_seconds")
        #expect(lines.dropFirst().first?.hasPrefix("alpha.safetensors,2,2,16384,") == true && lines.last?.hasPrefix("total,3,4,") == true, "\(lines)")
    }
}

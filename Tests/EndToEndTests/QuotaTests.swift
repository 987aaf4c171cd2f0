import Foundation
import NIOHTTP1
import SDBoxCore
import Testing

/// Usage per API key and quotas per key and user, checked against the tasks that ran: two keys of one user
/// and a key of another submit tasks through the task API and the A1111 API; a key's image quota refuses
/// the image past it (and no one else's), and survives a restart.
@Suite(.serialized, .timeLimit(.minutes(3))) struct QuotaTests {
    static let config = """
        workers:
          reference: {stepMilliseconds: 20, minimumStepMilliseconds: 20}
        """

    /// The id of a key (`sdbox_<id>_<secret>`).
    static func id(of key: String) -> String { String(key.split(separator: "_")[1]) }

    /// Submits a generation with `key` (the task API, or A1111's with `a1111`); answers the status, the
    /// JSON body, the task's id and the `Retry-After` header.
    static func submit(
        _ server: ServerProcess, _ key: String, _ body: JSONValue, a1111: Bool = false
    ) async throws -> (status: Int, answer: JSONValue, taskID: String?, retryAfter: String?) {
        let response = try await server.response(.POST, a1111 ? "/sdapi/v1/txt2img" : "/txt2img", body: try body.encoded(), headers: bearer(key))
        let answer = try JSONValue(parsing: response.body)
        return (response.status, answer, response.headers.first(name: "taskId"), response.headers.first(name: "Retry-After"))
    }

    /// What a finished task used, from its own record: images, width × height × steps × images, worker seconds.
    static func figures(_ server: ServerProcess, _ id: String) async throws -> (images: Int, pixelSteps: Int, seconds: Double) {
        let (_, task) = try await server.json(.GET, "/tasks/\(id)")
        let (_, result) = try await server.json(.GET, "/tasks/\(id)/result")
        let images = result["images"]?.arrayValue?.count ?? 0
        let request = try #require(task["request"])
        let pixelSteps = [request["width"], request["height"], request["steps"]].map { Int($0?.integerValue ?? 0) }.reduce(images, *)
        let seconds = (task["finishedAt"]?.doubleValue ?? 0) - (task["startedAt"]?.doubleValue ?? 0)
        return (images, pixelSteps, seconds)
    }

    @Test func usageByKeyAndQuotasPerKeyAndUserMatchTheTasksThatRan() async throws {
        let server = try await ServerProcess(config: Self.config, models: ["demo.safetensors": DemoCheckpoint.contents()])
        defer { server.destroy() }
        let annA = try await server.addKey(user: "ann", role: "user")
        let annB = try await server.addKey(user: "ann", role: "user")
        let bob = try await server.addKey(user: "bob", role: "user")
        var ran: [String: [String]] = [:]  // key id → its tasks
        for (key, body, a1111) in [
            (annA, ["prompt": "a", "steps": 2, "width": 64, "height": 64, "batch_size": 2] as JSONValue, false),
            (annA, ["prompt": "b", "steps": 3, "width": 64, "height": 64], true),
            (annB, ["prompt": "c", "steps": 2, "width": 96, "height": 64], false),
            (bob, ["prompt": "d", "steps": 2, "width": 64, "height": 64], true),
        ] {
            let submitted = try await Self.submit(server, key, body, a1111: a1111)
            #expect(submitted.status == 200, "\(submitted.answer)")
            let id = try #require(submitted.taskID)
            // An A1111 caller is answered as soon as its worker answers; the record is final a moment later.
            #expect(try await server.waitForTask(id)["status"] == "succeeded")
            ran[Self.id(of: key), default: []].append(id)
        }

        // Usage by key: each key's figures are the sums of its tasks' own.
        let (status, byKey) = try await server.json(.GET, "/admin/usage?groupBy=key")
        #expect(status == 200 && byKey["groupBy"] == "key")
        let rows = Dictionary(uniqueKeysWithValues: (byKey["rows"]?.arrayValue ?? []).compactMap { row in row["key"]?.stringValue.map { ($0, row) } })
        #expect(Set(rows.keys) == Set(ran.keys), "\(byKey)")
        for (key, ids) in ran {
            var (images, pixelSteps, seconds) = (0, 0, 0.0)
            for id in ids {
                let task = try await Self.figures(server, id)
                images += task.images
                pixelSteps += task.pixelSteps
                seconds += task.seconds
            }
            let row = try #require(rows[key])
            #expect(row["tasks"] == .integer(Int64(ids.count)) && row["images"] == .integer(Int64(images)), "\(key): \(row)")
            #expect(row["pixelSteps"] == .integer(Int64(pixelSteps)), "\(key): \(row)")
            #expect(abs((row["workerSeconds"]?.doubleValue ?? -1) - seconds) < 0.01, "\(key): \(row) against \(seconds)")
        }
        #expect(rows[Self.id(of: annA)]?["images"] == 3)
        // One key's tasks alone, grouped by user; and as CSV.
        let (_, annAOnly) = try await server.json(.GET, "/admin/usage?groupBy=user&key=\(Self.id(of: annA))")
        #expect(annAOnly["rows"]?.arrayValue?.map { $0["key"] } == ["ann"] && annAOnly["totals"]?["tasks"] == 2, "\(annAOnly)")
        let csv = try await server.response(.GET, "/admin/usage?groupBy=key", headers: [("Accept", "text/csv")])
        #expect(String(decoding: csv.body, as: UTF8.self).hasPrefix("key,tasks,images,pixel_steps,worker_seconds\r\n"))

        // A quota of 5 images a day on key A, which made 3 today: 2 more pass, the 6th image is refused.
        let (set, quota) = try await server.json(.PUT, "/admin/quotas/key/\(Self.id(of: annA))", ["imagesPerDay": 5])
        #expect(set == 200 && quota["type"] == "key" && quota["quota"]?["imagesPerDay"] == 5 && quota["day"]?["images"] == 3, "\(quota)")
        let small: JSONValue = ["prompt": "e", "steps": 1, "width": 64, "height": 64]
        #expect(try await Self.submit(server, annA, small).status == 200)
        #expect(try await Self.submit(server, annA, small, a1111: true).status == 200)
        let now = Date()
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = try #require(TimeZone(identifier: "UTC"))
        let midnight = utc.dateInterval(of: .day, for: now)?.end
        for a1111 in [false, true] {
            let refused = try await Self.submit(server, annA, small, a1111: a1111)
            #expect(refused.status == 429, "\(refused.answer)")
            #expect(refused.answer["error"] == "quota exceeded" && refused.answer["limit"] == "imagesPerDay", "\(refused.answer)")
            #expect(refused.answer["allowed"] == 5 && refused.answer["used"] == 5 && refused.answer["left"] == 0, "\(refused.answer)")
            #expect(refused.answer["quotaType"] == "key" && refused.answer["quotaName"] == .string(Self.id(of: annA)))
            #expect(refused.answer["resetsAt"]?.stringValue == midnight?.ISO8601Format(), "\(refused.answer)")
            #expect(refused.answer["message"]?.stringValue?.contains("0 left") == true && refused.taskID == nil)
            let retryAfter = Double(refused.retryAfter ?? "") ?? -1
            #expect(abs(retryAfter - (midnight?.timeIntervalSince(now) ?? 0)) < 5, "Retry-After: \(refused.retryAfter ?? "none")")
        }
        // The user's other key and the other user are not limited by it.
        #expect(try await Self.submit(server, annB, small).status == 200)
        #expect(try await Self.submit(server, bob, small, a1111: true).status == 200)
        // A user's quota covers every key of the user.
        #expect(try await server.json(.PUT, "/admin/quotas/user/bob", ["imagesPerMonth": 2]).0 == 200)
        let bobRefused = try await Self.submit(server, bob, small)
        #expect(bobRefused.status == 429 && bobRefused.answer["quotaType"] == "user" && bobRefused.answer["limit"] == "imagesPerMonth", "\(bobRefused.answer)")
        // Mistakes get clear errors.
        #expect(try await server.json(.PUT, "/admin/quotas/key/NoSuchKey123", ["imagesPerDay": 1]).0 == 404)
        let (negative, why) = try await server.json(.PUT, "/admin/quotas/user/ann", ["imagesPerDay": -1])
        #expect(negative == 400 && why["field"] == "imagesPerDay" && why["detail"]?.stringValue?.isEmpty == false, "\(why)")
        #expect(try await server.json(.PUT, "/admin/quotas/user/ann", [:]).0 == 400)
        #expect(try await server.json(.GET, "/admin/quotas", headers: bearer(annB)).0 == 403, "admins only")

        // Across a restart: the quotas are kept and the day's images counted again from the tasks.
        await server.stop()
        try await server.start()
        let (_, listed) = try await server.json(.GET, "/admin/quotas")
        let quotas = listed["quotas"]?.arrayValue ?? []
        #expect(quotas.map { "\($0["type"]?.stringValue ?? "")/\($0["name"]?.stringValue ?? "")" } == ["user/bob", "key/\(Self.id(of: annA))"], "\(listed)")
        #expect(quotas.last?["day"]?["images"] == 5 && quotas.first?["month"]?["images"] == 2, "\(listed)")
        let again = try await Self.submit(server, annA, small)
        #expect(again.status == 429 && again.answer["used"] == 5 && again.answer["left"] == 0, "\(again.answer)")
        #expect(try await Self.submit(server, annB, small).status == 200)
        // Removed, the quota limits no more.
        #expect(try await server.json(.DELETE, "/admin/quotas/key/\(Self.id(of: annA))").0 == 200)
        #expect(try await server.json(.DELETE, "/admin/quotas/key/\(Self.id(of: annA))").0 == 404)
        #expect(try await Self.submit(server, annA, small).status == 200)
    }
}

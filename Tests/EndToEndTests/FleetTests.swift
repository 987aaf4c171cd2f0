import Foundation
import HTTPTypes
import NIOHTTP1
import PostgresTestSupport
import SDBoxCore
import Testing

/// Boxes of a fleet as test processes: real `sdbox serve` processes on one real PostgreSQL database and
/// one shared folder (its checkpoints in `models/Stable-diffusion/`), each under its own `node.name`.
final class TestFleet: @unchecked Sendable {
    // Safety: the boxes are started and stopped by one test at a time.
    let postgres: PostgresServer
    let url: String
    let shared: String
    private(set) var boxes: [ServerProcess] = []

    /// `scheduler` gives each box's `scheduler` section (by its index); `databaseTimeoutSeconds`, how long a
    /// box waits for the database before a request fails as unavailable (`database.timeoutSeconds`).
    init(
        postgres: PostgresServer, models: [String], boxes count: Int, claimSeconds: Int = 3, databaseTimeoutSeconds: Int = 10,
        scheduler: @escaping @Sendable (Int) -> String = { _ in "{maxInstances: 2}" }, extra: String = ""
    ) async throws {
        self.postgres = postgres
        url = try await postgres.makeDatabase()
        shared = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-fleet-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: shared + "/models/Stable-diffusion", withIntermediateDirectories: true)
        for model in models {
            try DemoCheckpoint.contents().write(to: URL(fileURLWithPath: shared + "/models/Stable-diffusion/" + model))
        }
        let (url, shared) = (url, shared)
        config = { index in
            """
            database: {url: "\(url)", timeoutSeconds: \(databaseTimeoutSeconds)}
            sharedDir: \(shared)
            node: {name: box-\(index)}
            fleet: {claimSeconds: \(claimSeconds)}
            scheduler: \(scheduler(index))
            workers:
              reference: {stepMilliseconds: 10, minimumStepMilliseconds: 10}
            \(extra)
            """
        }
        // The boxes start together, as a fleet powered on at once does: one applies the migrations, one hashes each checkpoint.
        try await add(count)
    }

    /// Each box's configuration, by its index.
    let config: @Sendable (Int) -> String

    /// Starts `count` more boxes together, numbered after those already started.
    func add(_ count: Int) async throws {
        let (first, config) = (boxes.count, config)
        boxes += try await withThrowingTaskGroup(of: (Int, ServerProcess).self) { group in
            for index in first..<(first + count) {
                group.addTask { (index, try await ServerProcess(config: config(index))) }
            }
            return try await group.reduce(into: [(Int, ServerProcess)]()) { $0.append($1) }.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    func destroy() {
        for box in boxes { box.destroy() }
        try? FileManager.default.removeItem(atPath: shared)
    }

    /// Kills box `index` as a power cut would: sdbox and its workers, at once, with nothing cleaned up.
    func cut(_ index: Int) async {
        let workers = boxes[index].workerPIDs()
        await boxes[index].stop(signal: SIGKILL)
        for worker in workers { kill(worker, SIGKILL) }
    }

    /// Cuts box `index` at a moment it holds claimed tasks that cannot end, and returns how many it held.
    /// The box's workers are frozen (SIGSTOP, again each round for any started since), so a task the box
    /// handed to one cannot end, while sdbox itself runs on and lands any write it had sent (a task's end,
    /// which on a loaded machine can take a while). Once some task was running there in three counts a second
    /// apart (on a frozen worker, then: a task runs for milliseconds), the box and its workers are killed (at
    /// most 60 s: a box frozen out of all work is cut as it is). A task only queued there could still go to a
    /// worker started since the last freeze.
    func cutWhileHolding(_ index: Int) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(60)
        var counts: [Set<Substring>] = []
        while true {
            for worker in boxes[index].workerPIDs() { kill(worker, SIGSTOP) }
            let running = Set(try await psql("SELECT id FROM sdbox_tasks WHERE claimed_by = 'box-\(index)' AND state = 'running'").split(separator: "\n"))
            counts = Array((counts + [running]).suffix(3))
            let runningThroughout = counts.count == 3 && !counts.dropFirst().reduce(counts[0]) { $0.intersection($1) }.isEmpty
            if runningThroughout || ContinuousClock.now >= deadline {
                await cut(index)
                return Int(try await psql("SELECT count(*) FROM sdbox_tasks WHERE claimed_by = 'box-\(index)' AND NOT final")) ?? 0
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// What `psql` prints for `sql` on the fleet's database.
    func psql(_ sql: String) async throws -> String { try await postgres.psql(url, sql) }

    /// The `webhooks` section of fleets whose webhooks tests follow: retried each second, to this machine.
    static let quickWebhooks = "webhooks: {retrySeconds: 1, maxRetrySeconds: 1, maxAttempts: 100, allowPrivateNetworks: true}"

    /// Submits `count` async tasks to box 0 whose webhooks go to `receiver` (which is down), and returns
    /// their ids once each task ended and its webhook was tried and is pending.
    func submitWithPendingWebhooks(_ count: Int, to receiver: WebhookReceiver) async throws -> [String] {
        var ids: [String] = []
        for index in 0..<count {
            let body: JSONValue = [
                "stable_diffusion_model": "m1", "prompt": .string("fox \(index)"), "steps": 2, "width": 64, "height": 64,
                "callback_url": .string(receiver.url("/switched")),
            ]
            let (status, answer) = try await boxes[0].json(.POST, "/txt2img", body, headers: [("Request-Type", "async")])
            ids.append(try #require(answer["taskId"]?.stringValue, "\(status) \(answer)"))
        }
        let tried = "SELECT count(*) FROM sdbox_tasks WHERE final AND callback_pending AND jsonb_array_length(record->'callback'->'attempts') > 0"
        #expect(try await wait(for: tried, toBe: "\(count)", timeout: .seconds(60)) == "\(count)", "every webhook tried, and pending")
        return ids
    }

    /// Waits until `sql` prints `expected`, at most `timeout`; returns what it printed last.
    @discardableResult
    func wait(for sql: String, toBe expected: String, timeout: Duration = .seconds(120)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        var last = try await psql(sql)
        while last != expected, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(250))
            last = try await psql(sql)
        }
        return last
    }

    /// How many times the boxes' logs record task `id` as succeeded.
    func successesLogged() -> [String: Int] {
        var counts: [String: Int] = [:]
        for box in boxes {
            for line in box.log.split(separator: "\n") where line.contains("[Scheduler] task succeeded") {
                guard let range = line.range(of: "task=") else { continue }
                counts[String(line[range.upperBound...].prefix { !$0.isWhitespace }), default: 0] += 1
            }
        }
        return counts
    }
}

/// Several boxes on one PostgreSQL database and one shared folder serve as one sdbox: any box takes any
/// request, the boxes with room claim the tasks, a box that dies loses nothing, and a caller waiting on one
/// box hears of a task run on another.
@Suite(.serialized, .timeLimit(.minutes(5))) struct FleetTests {
    static let models = ["m1.safetensors", "m2.safetensors", "m3.safetensors", "m4.safetensors"]

    /// 300 async tasks over four models, sent round robin to three boxes; one box is cut off (SIGKILL of
    /// sdbox and its workers) mid-run. Every task ends `succeeded` once (one success recorded in all the
    /// boxes' logs), with its image in the shared folder, and each live box lists every task once.
    @Test func threeHundredTasksOnThreeBoxesSurviveABoxKilledMidRun() async throws {
        let fleet = try await TestFleet(postgres: try await PostgresServer.shared(), models: Self.models, boxes: 3)
        defer { fleet.destroy() }
        // Every move of a task to a final state, as the database sees it.
        _ = try await fleet.psql("""
            CREATE TABLE test_finals (id text NOT NULL, state text NOT NULL);
            CREATE FUNCTION test_note_final() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN IF NEW.final AND NOT OLD.final THEN INSERT INTO test_finals VALUES (NEW.id, NEW.state); END IF; RETURN NEW; END $$;
            CREATE TRIGGER test_finals AFTER UPDATE ON sdbox_tasks FOR EACH ROW EXECUTE FUNCTION test_note_final();
            """)
        var ids: [String] = []
        for start in stride(from: 0, to: 300, by: 20) {
            let batch = try await withThrowingTaskGroup(of: String.self) { group in
                for index in start..<(start + 20) {
                    group.addTask {
                        let body: JSONValue = [
                            "stable_diffusion_model": .string(Self.models[index % 4]), "prompt": .string("fox \(index)"), "steps": 4, "width": 64, "height": 64,
                        ]
                        let (status, answer) = try await fleet.boxes[index % 3].json(.POST, "/txt2img", body, headers: [("Request-Type", "async")])
                        guard status == 200, let id = answer["taskId"]?.stringValue else { throw TestFailure("not accepted: \(status) \(answer)") }
                        return id
                    }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            ids += batch
        }
        #expect(Set(ids).count == 300)
        // Box 2 dies once about a third of the work is done, with tasks claimed and running.
        try await fleet.wait(for: "SELECT count(*) >= 100 FROM sdbox_tasks WHERE final", toBe: "t")
        let heldByTheDead = try await fleet.cutWhileHolding(2)
        #expect(heldByTheDead > 0, "box 2 held tasks when it was cut")
        let done = try await fleet.wait(for: "SELECT count(*) FROM sdbox_tasks WHERE final", toBe: "300")
        #expect(done == "300", "tasks final: \(done)")
        #expect(try await fleet.psql("SELECT count(*) FROM sdbox_tasks WHERE state = 'succeeded' AND jsonb_array_length(record->'result'->'images') = 1") == "300")
        #expect(try await fleet.psql("SELECT count(DISTINCT claimed_by) FROM sdbox_tasks") == "3", "every box ran tasks")
        #expect(fleet.boxes.prefix(2).contains { $0.log.contains("fleet: took back tasks whose box stopped renewing its claims") })
        // Once: each task became final once, as succeeded, and no box announced a success twice. (What the
        // dead box logged last may be lost with it: a task missing from the logs must be one it ran.)
        #expect(try await fleet.psql("SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE state = 'succeeded') FROM test_finals") == "300|300|300")
        let logged = fleet.successesLogged()
        #expect(logged.values.allSatisfy { $0 == 1 }, "\(logged.filter { $0.value != 1 })")
        let unlogged = Set(ids).subtracting(logged.keys).sorted()
        let unloggedOwners = unlogged.isEmpty ? "" : try await fleet.psql("SELECT DISTINCT claimed_by FROM sdbox_tasks WHERE id IN ('\(unlogged.joined(separator: "','"))')")
        #expect(unlogged.isEmpty || unloggedOwners == "box-2", "\(unlogged) ran on \(unloggedOwners); box-2 held \(heldByTheDead) when cut")
        for image in try await fleet.psql("SELECT record->'result'->'images'->>0 FROM sdbox_tasks").split(separator: "\n").prefix(300) {
            #expect(FileManager.default.fileExists(atPath: fleet.shared + "/objects/" + image), "\(image)")
        }
        // Every live box lists every task once.
        for box in fleet.boxes.prefix(2) {
            let (status, listed) = try await box.json(.GET, "/tasks?limit=500")
            let listedIDs = listed["tasks"]?.arrayValue?.compactMap { $0["taskId"]?.stringValue } ?? []
            #expect(status == 200 && listedIDs.count == 300 && Set(listedIDs) == Set(ids))
        }
        // The box that died is listed as no longer live; the others with their workers.
        let nodes = try await fleet.boxes[0].waitForWorkers(timeout: .seconds(15)) { workers in
            workers["nodes"]?.arrayValue?.first { $0["name"] == "box-2" }?["live"] == false
        }["nodes"]?.arrayValue ?? []
        #expect(nodes.map { $0["name"]?.stringValue } == ["box-0", "box-1", "box-2"], "\(nodes)")
        #expect(nodes.first?["report"]?["workers"]?.arrayValue?.isEmpty == false, "\(nodes)")
        // And in the metrics: two live boxes, one not answering, and the tasks taken back from it.
        var metrics = ""
        let looked = ContinuousClock.now + .seconds(10)
        repeat {
            metrics = String(decoding: try await fleet.boxes[0].request(.GET, "/metrics").1, as: UTF8.self)
            if metrics.contains(#"sdbox_fleet_nodes{state="not_answering"} 1"#) { break }
            try await Task.sleep(for: .milliseconds(200))
        } while ContinuousClock.now < looked
        #expect(metrics.contains(#"sdbox_fleet_nodes{state="live"} 2"#) && metrics.contains(#"sdbox_fleet_nodes{state="not_answering"} 1"#), "\(metrics.split(separator: "\n").filter { $0.contains("fleet") })")
        var takenBack = 0
        for box in fleet.boxes.prefix(2) {
            let text = String(decoding: try await box.request(.GET, "/metrics").1, as: UTF8.self)
            takenBack += text.split(separator: "\n").first { $0.hasPrefix("sdbox_fleet_tasks_taken_back_total ") }.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
        #expect(takenBack > 0, "the live boxes count the tasks they took back")
        // The Workers & GPUs page shows the boxes, the dead one as not answering.
        if Chromium.isAvailable {
            let browser = try Chromium(log: fleet.boxes[0].dataDirectory + "/chromium.log")
            defer { browser.shutDown() }
            let page = try await browser.newPage(width: 1280, height: 900)
            try await page.open(fleet.boxes[0].baseURL + "/#workers")
            _ = try await page.waitFor("""
                ['box-0', 'box-1'].every((name) => document.querySelector(`tr[data-node="${name}"]`)?.dataset.live === 'true')
                    && document.querySelector('tr[data-node="box-2"]')?.dataset.live === 'false'
                    && document.querySelector('tr[data-node="box-2"]')?.textContent.includes('not answering')
                    && document.querySelector('tr[data-node="box-0"]')?.textContent.includes('box-0 (this box)')
                """, "the three boxes, box-2 not answering")
            #expect(browser.problems.isEmpty, "the page reported: \(browser.problems)")
        }
    }

    /// A caller waiting on one box for a task another box runs gets its answer (A1111 route and task
    /// API); its progress is read from the waiting box, and a cancel sent there stops it on the other.
    @Test func aCallerOnOneBoxIsAnsweredForATaskRunOnAnother() async throws {
        let fleet = try await TestFleet(postgres: try await PostgresServer.shared(), models: ["m1.safetensors"], boxes: 2)
        defer { fleet.destroy() }
        let (front, back) = (fleet.boxes[0], fleet.boxes[1])
        // The checkpoint in the shared folder is hashed once, by one box, and both know its hash.
        let hashed = fleet.boxes.map { box in box.log.split(separator: "\n").filter { $0.contains("model=m1.safetensors") && $0.contains("model hashed") && !$0.contains("by another box") }.count }
        #expect(hashed.reduce(0, +) == 1, "\(hashed)")
        for box in fleet.boxes {
            let model = try await box.json(.GET, "/sdapi/v1/sd-models").1.arrayValue?.first { $0["model_name"] == "m1" }
            #expect(model?["sha256"]?.stringValue?.count == 64, "\(String(describing: model))")
        }
        // m1's pool has one instance across the fleet (the default): once it is warm on box 1, box 0 leaves its tasks to box 1.
        let warm = try await back.json(.POST, "/txt2img", ["stable_diffusion_model": "m1", "prompt": "p", "steps": 1, "width": 64, "height": 64]).1
        let runner = try await fleet.psql("SELECT claimed_by FROM sdbox_tasks WHERE id = '\(warm["taskId"]?.stringValue ?? "")'")
        let waiting = runner == "box-1" ? front : back
        _ = try await waiting.waitForWorkers(timeout: .seconds(15)) { $0["workersElsewhere"]?["m1.safetensors"] == 1 }

        let body: JSONValue = ["stable_diffusion_model": "m1", "prompt": "fox", "steps": 3, "width": 64, "height": 64]
        let (status, a1111) = try await waiting.json(.POST, "/sdapi/v1/txt2img", body)
        #expect(status == 200 && a1111["images"]?.arrayValue?.count == 1, "\(a1111)")
        let (taskStatus, answer) = try await waiting.json(.POST, "/txt2img", body)
        let id = try #require(answer["taskId"]?.stringValue)
        #expect(taskStatus == 200 && answer["status"] == "succeeded" && answer["ossUrl"]?.arrayValue?.count == 1, "\(answer)")
        #expect(try await fleet.psql("SELECT claimed_by FROM sdbox_tasks WHERE id = '\(id)'") == runner)

        // A long task on the other box: its progress read here, then cancelled from here.
        let slow: JSONValue = ["stable_diffusion_model": "m1", "prompt": "slow", "steps": 150, "n_iter": 8, "width": 64, "height": 64]
        let slowID = try #require(try await waiting.json(.POST, "/txt2img", slow, headers: [("Request-Type", "async")]).1["taskId"]?.stringValue)
        async let streamed = readEvents(waiting.baseURL + "/tasks/\(slowID)/events")
        let deadline = ContinuousClock.now + .seconds(30)
        var progress: JSONValue = [:]
        while ContinuousClock.now < deadline {
            progress = try await waiting.json(.GET, "/tasks/\(slowID)/progress").1
            if progress["status"] == "running", (progress["progress"]?.doubleValue ?? 0) > 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(progress["status"] == "running" && (progress["progress"]?.doubleValue ?? 0) > 0, "\(progress)")
        // The running box announces progress each second: let the stream see some before the cancel.
        try await Task.sleep(for: .seconds(2))
        let (cancelStatus, cancelled) = try await waiting.json(.POST, "/tasks/\(slowID)/cancellation")
        #expect(cancelStatus == 200 && cancelled["status"] == "cancelled", "\(cancelled)")
        #expect(try await fleet.psql("SELECT state, claimed_by FROM sdbox_tasks WHERE id = '\(slowID)'") == "cancelled|\(runner)")
        // Its event stream on this box followed it on the other: started, steps in order, then its end.
        let events = try await streamed
        let names = events.map(\.name)
        let steps = events.filter { $0.name == "progress" }.compactMap { $0.data["step"]?.integerValue }
        #expect(names.filter { $0 == "started" }.count == 1 && !steps.isEmpty && names.last != nil && names.last != "progress", "\(names)")
        #expect(events.last?.data["status"] == "cancelled", "\(String(describing: events.last))")
    }

    /// What an admin sets on one box holds on every box: a quota counts the images every box made, and a
    /// paused queue holds every box.
    @Test func quotasAndThePauseHoldAcrossTheFleet() async throws {
        let fleet = try await TestFleet(postgres: try await PostgresServer.shared(), models: ["m1.safetensors", "m2.safetensors"], boxes: 2)
        defer { fleet.destroy() }
        let (first, second) = (fleet.boxes[0], fleet.boxes[1])
        #expect(try await first.json(.PUT, "/admin/quotas/user/default", ["imagesPerDay": 3]).0 == 200)
        func dayImages(on box: ServerProcess) async throws -> JSONValue? {
            try await box.json(.GET, "/admin/quotas").1["quotas"]?.arrayValue?.first { $0["name"] == "default" }?["day"]?["images"]
        }
        for index in 0..<3 {
            let body: JSONValue = ["stable_diffusion_model": .string(index % 2 == 0 ? "m1" : "m2"), "prompt": "p", "steps": 1, "width": 64, "height": 64]
            #expect(try await first.json(.POST, "/txt2img", body).1["status"] == "succeeded")
        }
        let deadline = ContinuousClock.now + .seconds(15)
        while try await dayImages(on: second) != 3, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(try await dayImages(on: second) == 3, "the other box counts the images made on any box")
        let (refused, why) = try await second.json(.POST, "/txt2img", ["stable_diffusion_model": "m1", "prompt": "p", "steps": 1, "width": 64, "height": 64])
        #expect(refused == 429 && why["error"] == "quota exceeded" && why["used"] == 3, "\(why)")

        #expect(try await first.json(.POST, "/admin/queue/pause").0 == 200)
        _ = try await second.waitForWorkers(timeout: .seconds(15)) { $0["paused"]?["all"] == true }
        #expect(try await first.json(.DELETE, "/admin/quotas/user/default").0 == 200)
        let removed = ContinuousClock.now + .seconds(15)
        while try await second.json(.GET, "/admin/quotas").1["quotas"]?.arrayValue?.isEmpty == false, ContinuousClock.now < removed {
            try await Task.sleep(for: .milliseconds(100))
        }
        let held = try #require(try await second.json(.POST, "/txt2img", ["stable_diffusion_model": "m2", "prompt": "p", "steps": 1, "width": 64, "height": 64], headers: [("Request-Type", "async")]).1["taskId"]?.stringValue)
        try await Task.sleep(for: .seconds(2))
        #expect(try await fleet.psql("SELECT state, claimed_by IS NULL FROM sdbox_tasks WHERE id = '\(held)'") == "queued|t", "no box claims while paused")
        #expect(try await second.json(.POST, "/admin/queue/resume").0 == 200)
        #expect(try await first.waitForTask(held)["status"] == "succeeded")
    }

    /// A user's queue limit holds across the boxes: the unfinished tasks the other boxes accepted count
    /// too (read at most once a second per user), and a box that restarts still counts those it accepted before.
    @Test func aUsersQueueLimitHoldsAcrossTheBoxes() async throws {
        let fleet = try await TestFleet(postgres: try await PostgresServer.shared(), models: ["m1.safetensors"], boxes: 2, extra: "limits: {maxQueuedPerUser: 3}")
        defer { fleet.destroy() }
        let (first, second) = (fleet.boxes[0], fleet.boxes[1])
        #expect(try await first.json(.POST, "/admin/queue/pause").0 == 200)
        _ = try await second.waitForWorkers(timeout: .seconds(15)) { $0["paused"]?["all"] == true }
        func submit(to box: ServerProcess) async throws -> (Int, JSONValue) {
            try await box.json(.POST, "/txt2img", ["stable_diffusion_model": "m1", "prompt": "p", "steps": 1, "width": 64, "height": 64], headers: [("Request-Type", "async")])
        }
        #expect(try await submit(to: first).0 == 200)
        #expect(try await submit(to: first).0 == 200)
        #expect(try await submit(to: second).0 == 200)
        try await Task.sleep(for: .milliseconds(1100))
        let (refused, why) = try await submit(to: second)
        #expect(refused == 429 && why["error"] == "queue full" && why["detail"]?.stringValue?.contains("maxQueuedPerUser") == true, "\(why)")
        #expect(try await submit(to: first).0 == 429)

        await first.stop()
        try await first.start()
        #expect(try await submit(to: first).0 == 429, "the restarted box counts the tasks it accepted before")
        #expect(try await submit(to: second).0 == 429)

        // Once the tasks ran (on either box), there is room again on both.
        #expect(try await first.json(.POST, "/admin/queue/resume").0 == 200)
        #expect(try await fleet.wait(for: "SELECT count(*) FROM sdbox_tasks WHERE final AND state = 'succeeded'", toBe: "3") == "3")
        for box in [first, second] {
            var status = 0
            let deadline = ContinuousClock.now + .seconds(15)
            repeat {
                status = try await submit(to: box).0
                if status != 200 { try await Task.sleep(for: .milliseconds(200)) }
            } while status != 200 && ContinuousClock.now < deadline
            #expect(status == 200, "room again once the tasks ended")
        }
    }

    /// A webhook is delivered by one box: the box that ended its task, while it lives; a box that starts
    /// leaves the other boxes' pending webhooks alone; the pending webhooks of a box that stopped are taken
    /// over by one live box. The receiver is down meanwhile, then up: each task's result arrives once.
    @Test func eachWebhookIsDeliveredOnceAndTheWebhooksOfABoxThatStoppedAreTakenOver() async throws {
        let receiver = try await WebhookReceiver()
        await receiver.log.set(down: true)
        let fleet = try await TestFleet(
            postgres: try await PostgresServer.shared(), models: ["m1.safetensors"], boxes: 1,
            extra: TestFleet.quickWebhooks
        )
        defer { fleet.destroy() }
        let ids = try await fleet.submitWithPendingWebhooks(4, to: receiver)
        // A box that starts does not deliver box 0's webhooks.
        try await fleet.add(1)
        try await Task.sleep(for: .seconds(2))
        #expect(try await fleet.psql("SELECT DISTINCT callback_by FROM sdbox_tasks") == "box-0")
        // Box 0 stops: box 1 takes its webhooks over (after `claimSeconds`), and a box started then leaves them to it.
        await fleet.cut(0)
        let takenOver = "SELECT count(*) FROM sdbox_tasks WHERE callback_by = 'box-1'"
        #expect(try await fleet.wait(for: takenOver, toBe: "4", timeout: .seconds(30)) == "4")
        #expect(fleet.boxes[1].log.contains("fleet: took over webhooks whose box stopped renewing its row"))
        try await fleet.add(1)
        await receiver.log.set(down: false)
        #expect(try await fleet.wait(for: "SELECT count(*) FROM sdbox_tasks WHERE callback_pending", toBe: "0", timeout: .seconds(30)) == "0")
        // Retries come each second: a second delivery of any task would have come by now.
        try await Task.sleep(for: .seconds(3))
        let accepted = await receiver.log.accepted.compactMap { $0.headers[HTTPField.Name("X-SDBox-Task-Id")!] }
        #expect(accepted.sorted() == ids.sorted(), "each task's result accepted once: \(accepted)")
        #expect(try await fleet.psql("SELECT DISTINCT record->'callback'->>'state' FROM sdbox_tasks") == "delivered")
    }

    /// A box frozen past `fleet.claimSeconds` (as in a long pause or a network cut) has its pending webhooks
    /// taken over; when it comes back it leaves them to the box that took them, rather than posting them too.
    @Test func aBoxThatComesBackLeavesTheWebhooksAnotherTookOver() async throws {
        let receiver = try await WebhookReceiver()
        await receiver.log.set(down: true)
        let fleet = try await TestFleet(
            postgres: try await PostgresServer.shared(), models: ["m1.safetensors"], boxes: 1,
            extra: TestFleet.quickWebhooks
        )
        defer { fleet.destroy() }
        let ids = try await fleet.submitWithPendingWebhooks(3, to: receiver)
        try await fleet.add(1)
        // Box 0 freezes; box 1 takes its webhooks over once its row is stale.
        kill(fleet.boxes[0].pid, SIGSTOP)
        let takenOver = try await fleet.wait(for: "SELECT count(*) FROM sdbox_tasks WHERE callback_by = 'box-1'", toBe: "3", timeout: .seconds(30))
        let seen = fleet.boxes[0].log.count
        kill(fleet.boxes[0].pid, SIGCONT)
        #expect(takenOver == "3")
        // Back, box 0 makes no more attempts (the receiver is still down: each would be logged as failed).
        try await Task.sleep(for: .seconds(3))
        let since = String(fleet.boxes[0].log.dropFirst(seen))
        #expect(since.components(separatedBy: "webhook taken over by another box; this box leaves it").count - 1 == 3, "\(since)")
        #expect(!since.contains("webhook attempt failed"), "\(since)")
        await receiver.log.set(down: false)
        #expect(try await fleet.wait(for: "SELECT count(*) FROM sdbox_tasks WHERE callback_pending", toBe: "0", timeout: .seconds(30)) == "0")
        try await Task.sleep(for: .seconds(2))
        let accepted = await receiver.log.accepted.compactMap { $0.headers[HTTPField.Name("X-SDBox-Task-Id")!] }
        #expect(accepted.sorted() == ids.sorted(), "each task's result accepted once: \(accepted)")
    }

    /// A webhook being retried while PostgreSQL is stopped is neither dropped nor sent twice: its box waits
    /// for the database to read the task and to record each attempt, then delivers it once.
    @Test func aWebhookWaitsOutAPostgreSQLOutage() async throws {
        let postgres = try await PostgresServer.dedicated()
        let receiver = try await WebhookReceiver()
        await receiver.log.set(down: true)
        let fleet = try await TestFleet(
            postgres: postgres, models: ["m1.safetensors"], boxes: 1, claimSeconds: 30, databaseTimeoutSeconds: 1, extra: TestFleet.quickWebhooks
        )
        defer { fleet.destroy() }
        let ids = try await fleet.submitWithPendingWebhooks(1, to: receiver)
        // Longer than the 5 s a final task is served from this box's cache, so that reads reach the stopped
        // database, and than the box's 1 s wait for it, so that they fail.
        try await postgres.stop()
        try await Task.sleep(for: .seconds(8))
        try await postgres.start()
        await receiver.log.set(down: false)
        #expect(try await fleet.wait(for: "SELECT count(*) FROM sdbox_tasks WHERE callback_pending", toBe: "0", timeout: .seconds(30)) == "0")
        try await Task.sleep(for: .seconds(2))
        let accepted = await receiver.log.accepted.compactMap { $0.headers[HTTPField.Name("X-SDBox-Task-Id")!] }
        #expect(accepted == ids, "the result accepted once: \(accepted)")
    }

    /// A pool deleted on one box is let go of on every box: the box that runs its worker stops it within a
    /// heartbeat, as the box that deleted it would (idle workers otherwise stay for 10 minutes).
    @Test func aPoolDeletedOnOneBoxStopsItsWorkerOnAnother() async throws {
        let fleet = try await TestFleet(postgres: try await PostgresServer.shared(), models: ["m1.safetensors"], boxes: 2)
        defer { fleet.destroy() }
        let (status, answer) = try await fleet.boxes[0].json(.POST, "/txt2img", ["stable_diffusion_model": "m1", "prompt": "p", "steps": 1, "width": 64, "height": 64])
        #expect(status == 200 && answer["status"] == "succeeded", "\(answer)")
        func runsM1(_ box: ServerProcess) async throws -> Bool {
            try await box.json(.GET, "/workers").1["workers"]?.arrayValue?.contains { $0["model"] == "m1.safetensors" } == true
        }
        let holder = try await runsM1(fleet.boxes[0]) ? 0 : 1
        #expect(try await runsM1(fleet.boxes[holder]))
        let (deleted, why) = try await fleet.boxes[1 - holder].json(.POST, "/del/sd/functions", ["functions": ["m1.safetensors"]])
        #expect(deleted == 200, "\(why)")
        _ = try await fleet.boxes[holder].waitForWorkers(timeout: .seconds(15)) { workers in
            workers["workers"]?.arrayValue?.contains { $0["model"] == "m1.safetensors" } == false
        }
        #expect(fleet.boxes[holder].log.contains("pool deleted"))
    }

    /// A model deleted with the original's `DELETE /models/{name}` on one box (its record kept, marked
    /// deleted, and its pool removed in the same write) stops its task running on another box: the task
    /// fails with the reason rather than finishing on a model that is gone, and no box lists its function.
    @Test func aModelDeletedOnOneBoxStopsItsTaskRunningOnAnother() async throws {
        let fleet = try await TestFleet(postgres: try await PostgresServer.shared(), models: ["m1.safetensors"], boxes: 2)
        defer { fleet.destroy() }
        // 150 steps at 1024x1024: 6 s at the fleet's pace.
        let body: JSONValue = ["stable_diffusion_model": "m1", "prompt": "p", "steps": 150, "width": 1024, "height": 1024]
        let (status, answer) = try await fleet.boxes[0].json(.POST, "/txt2img", body, headers: [("Request-Type", "async")])
        #expect(status == 200, "\(answer)")
        let id = try #require(answer["taskId"]?.stringValue)
        try await fleet.wait(for: "SELECT count(*) FROM sdbox_tasks WHERE id = '\(id)' AND state = 'running'", toBe: "1", timeout: .seconds(30))
        let holder = try await fleet.psql("SELECT claimed_by FROM sdbox_tasks WHERE id = '\(id)'") == "box-0" ? 0 : 1
        let (deleted, why) = try await fleet.boxes[1 - holder].json(.DELETE, "/models/m1.safetensors")
        #expect(deleted == 200, "\(why)")
        let result = try await fleet.boxes[holder].waitForTask(id)
        #expect(result["status"] == "failed" && result["error"]?.stringValue?.contains("was deleted") == true, "\(result)")
        for box in fleet.boxes {
            let functions = try await box.json(.GET, "/list/sdapi/functions").1["functions"]?.arrayValue ?? []
            #expect(!functions.contains { $0["model"] == "m1.safetensors" }, "\(functions)")
        }
    }

    /// Boxes with GPUs of different sizes: a model whose pool needs more GPU memory than one box has runs
    /// on the box that has it, whichever box took the request; none fails for want of a GPU, unless no box
    /// has one big enough.
    @Test func aModelTooBigForOneBoxsGPURunsOnABoxWithABiggerOne() async throws {
        let fleet = try await TestFleet(postgres: try await PostgresServer.shared(), models: ["m1.safetensors"], boxes: 2) { index in
            "{maxInstances: 2, gpus: [{index: 0, name: GPU, memoryMiB: \(index == 0 ? 8192 : 24576)}], pool: {gpuMemoryMiB: 12000}}"
        }
        defer { fleet.destroy() }
        var ids: [String] = []
        for index in 0..<6 {
            let body: JSONValue = ["stable_diffusion_model": "m1", "prompt": "p", "steps": 2, "width": 64, "height": 64]
            let (status, answer) = try await fleet.boxes[index % 2].json(.POST, "/txt2img", body, headers: [("Request-Type", "async")])
            #expect(status == 200, "\(answer)")
            ids.append(try #require(answer["taskId"]?.stringValue))
        }
        for id in ids { #expect(try await fleet.boxes[0].waitForTask(id)["status"] == "succeeded") }
        #expect(try await fleet.psql("SELECT DISTINCT claimed_by FROM sdbox_tasks") == "box-1", "only the box with the 24 GiB GPU ran them")
        // A pool no box's GPU can hold fails with the reason, as on a single box, rather than waiting.
        #expect(try await fleet.boxes[0].json(.POST, "/batch_update_sd_resource", ["models": ["m1.safetensors"], "gpuMemorySize": 40000]).0 == 200)
        try await Task.sleep(for: .seconds(2))
        let (_, failed) = try await fleet.boxes[0].json(.POST, "/txt2img", ["stable_diffusion_model": "m1", "prompt": "p", "steps": 2, "width": 64, "height": 64])
        #expect(failed["status"] == "failed" && failed["message"]?.stringValue?.contains("largest GPU offers") == true, "\(failed)")
    }

    /// PostgreSQL stopped for 10 s while two boxes work through 60 tasks: nothing accepted is lost, nothing
    /// runs twice (the outage is shorter than `fleet.claimSeconds`), and the boxes go on by themselves.
    @Test func postgreSQLStoppedForTenSecondsMidRunLosesNoTask() async throws {
        let postgres = try await PostgresServer.dedicated()
        let fleet = try await TestFleet(postgres: postgres, models: Self.models, boxes: 2, claimSeconds: 30)
        defer { fleet.destroy() }
        var ids: [String] = []
        for index in 0..<60 {
            let body: JSONValue = ["stable_diffusion_model": .string(Self.models[index % 4]), "prompt": "p", "steps": 20, "width": 64, "height": 64]
            let (status, answer) = try await fleet.boxes[index % 2].json(.POST, "/txt2img", body, headers: [("Request-Type", "async")])
            #expect(status == 200, "\(answer)")
            ids.append(try #require(answer["taskId"]?.stringValue))
        }
        try await fleet.wait(for: "SELECT count(*) >= 10 FROM sdbox_tasks WHERE final", toBe: "t")
        try await postgres.stop()
        try await Task.sleep(for: .seconds(10))
        try await postgres.start()
        let done = try await fleet.wait(for: "SELECT count(*) FROM sdbox_tasks WHERE state = 'succeeded'", toBe: "60")
        let states = try await fleet.psql("SELECT state, claimed_by, lease_expires_at < now(), record->>'attempts', id FROM sdbox_tasks WHERE state <> 'succeeded'")
        let stuck = states.split(separator: "\n").compactMap { $0.split(separator: "|").last.map(String.init) }
        let lines = fleet.boxes.flatMap { box in box.log.split(separator: "\n").filter { line in stuck.contains { line.contains($0) } } }
        #expect(done == "60", "\(states)\n\(lines.joined(separator: "\n"))")
        let logged = fleet.successesLogged()
        #expect(Set(ids) == Set(logged.keys) && logged.values.allSatisfy { $0 == 1 }, "\(logged.filter { $0.value != 1 }) \(fleet.boxes[0].log.suffix(3000))")
    }
}

import Foundation
import Logging
import PostgresTestSupport
import SDBoxCore
import Storage
import Testing

/// The fleet's one queue in PostgreSQL: claims by preference, never one task to two boxes, fencing of a
/// box whose claim was taken over, and the release of expired claims.
@Suite struct PostgresTaskClaimsTests {
    /// A box: its store and its claims on one database.
    struct Box {
        let tasks: PostgresTaskStore
        let claims: PostgresTaskClaims

        init(_ name: String, on database: PostgresDatabase) {
            let held = HeldClaims()
            tasks = PostgresTaskStore(database: database, node: name, claims: held)
            claims = PostgresTaskClaims(database: database, node: name, held: held)
        }
    }

    func openDatabase() async throws -> PostgresDatabase {
        let location = try PostgresLocation(url: try await PostgresServer.shared().makeDatabase())
        return try await PostgresDatabase.open(location, maxConnections: 8, timeout: .seconds(120), logger: Logger(label: "sdbox.test.claims"))
    }

    @Test func claimsPreferTheOverdueThenIdleThenWarmThenUnservedModels() async throws {
        let database = try await openDatabase()
        defer { Task { await database.close() } }
        let box = Box("a", on: database)
        let now = Date()
        // Oldest first: cold (served elsewhere), unserved, warm, idle.
        for (id, model, age) in [("cold", "c", 40.0), ("unserved", "u", 30.0), ("warm", "w", 20.0), ("idle", "i", 10.0)] {
            _ = try await box.tasks.insert(StoreSuite.makeTask(id, model: model, at: now.addingTimeInterval(-age)))
        }
        var preferences = PostgresTaskClaims.Preferences()
        preferences.idle = ["i"]
        preferences.warm = ["i", "w"]
        preferences.servedElsewhere = ["c"]
        preferences.fairnessSeconds = 3600
        var order: [String] = []
        while let task = try await box.claims.claim(preferences, claimSeconds: 30) { order.append(task.id) }
        #expect(order == ["idle", "warm", "unserved", "cold"])

        // A task past the fairness bound goes before every preference; an excluded model is never claimed.
        _ = try await box.tasks.insert(StoreSuite.makeTask("late", model: "c", at: now.addingTimeInterval(-120)))
        _ = try await box.tasks.insert(StoreSuite.makeTask("fresh", model: "i", at: now))
        _ = try await box.tasks.insert(StoreSuite.makeTask("capped", model: "x", at: now.addingTimeInterval(-500)))
        preferences.fairnessSeconds = 60
        preferences.excluded = ["x"]
        #expect(try await box.claims.claim(preferences, claimSeconds: 30)?.id == "late")
        #expect(try await box.claims.claim(preferences, claimSeconds: 30)?.id == "fresh")
        #expect(try await box.claims.claim(preferences, claimSeconds: 30) == nil)
    }

    @Test func boxesClaimingTogetherNeverTakeOneTaskTwice() async throws {
        let database = try await openDatabase()
        defer { Task { await database.close() } }
        let boxes = ["a", "b", "c"].map { Box($0, on: database) }
        for index in 0..<60 { _ = try await boxes[0].tasks.insert(StoreSuite.makeTask("t\(index)", model: "m\(index % 4)")) }
        let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
            for box in boxes {
                group.addTask {
                    var mine: [String] = []
                    while let task = try await box.claims.claim(PostgresTaskClaims.Preferences(), claimSeconds: 30) { mine.append(task.id) }
                    return mine
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(claimed.count == 60 && Set(claimed).count == 60)
    }

    @Test func aBoxWhoseClaimExpiredCannotFinishTheTask() async throws {
        let database = try await openDatabase()
        defer { Task { await database.close() } }
        let (a, b) = (Box("a", on: database), Box("b", on: database))
        _ = try await a.tasks.insert(StoreSuite.makeTask("t"))
        // A claims and starts it, then stops renewing (its claim lasts 1 s).
        #expect(try await a.claims.claim(.init(), claimSeconds: 1)?.id == "t")
        try await a.tasks.update("t") {
            $0.state = .running
            $0.attempts += 1
        }
        try await Task.sleep(for: .milliseconds(1500))
        // B gives it back to the queue (a running task counts its attempt), claims and finishes it.
        let released = try await b.claims.release(expiredOrOf: nil, maxAttempts: 2)
        #expect(released.map(\.id) == ["t"] && released.first?.state == .queued && released.first?.attempts == 1)
        #expect(try await b.claims.claim(.init(), claimSeconds: 30)?.id == "t")
        try await b.tasks.update("t") {
            $0.state = .running
            $0.attempts += 1
        }
        // A's late outcome is refused, before its images and at its write; B's is the one.
        await #expect(throws: TaskStoreError.claimLost("t")) { try await a.tasks.confirmClaim("t") }
        await #expect(throws: TaskStoreError.claimLost("t")) {
            try await a.tasks.update("t") { $0.state = .succeeded }
        }
        try await b.tasks.confirmClaim("t")
        let done = try await b.tasks.update("t") { $0.state = .succeeded }
        #expect(done.state == .succeeded && done.attempts == 2)
        // Released again after its last attempt, a task fails with the reason.
        _ = try await a.tasks.insert(StoreSuite.makeTask("u"))
        #expect(try await a.claims.claim(.init(), claimSeconds: 30)?.id == "u")
        try await a.tasks.update("u") {
            $0.state = .running
            $0.attempts = 2
        }
        let failed = try await b.claims.release(expiredOrOf: "a", maxAttempts: 2)
        #expect(failed.first?.state == .failed && failed.first?.error?.contains("the box a stopped") == true, "\(failed)")
    }

    /// A box whose webhooks another box took over (it had stopped renewing its row) is told so before an
    /// attempt, and an attempt it made anyway is not recorded: the box that took it over delivers it.
    @Test func aBoxWhoseWebhookWasTakenOverLeavesItToTheOther() async throws {
        let database = try await openDatabase()
        defer { Task { await database.close() } }
        let (a, b) = (Box("a", on: database), Box("b", on: database))
        var hooked = StoreSuite.makeTask("t")
        hooked.callback = TaskCallback(url: "http://127.0.0.1:9/hook", baseURL: nil)
        _ = try await a.tasks.insert(hooked)
        #expect(try await a.claims.claim(.init(), claimSeconds: 30)?.id == "t")
        try await a.tasks.update("t") { $0.state = .running }
        try await a.tasks.update("t") { $0.state = .succeeded }
        #expect(try await a.tasks.deliversWebhook(of: "t"), "the box that ended the task delivers it")
        #expect(try await b.tasks.deliversWebhook(of: "t") == false)
        // A has no live row (it never beat, as a box frozen that long): B takes its pending webhook over.
        #expect(try await b.claims.takeOverWebhooks(liveSeconds: 30).map(\.id) == ["t"])
        #expect(try await a.tasks.deliversWebhook(of: "t") == false)
        #expect(try await b.tasks.deliversWebhook(of: "t"))
        let attempt = WebhookAttempt(at: Date(), status: 200, error: nil, milliseconds: 1)
        await #expect(throws: TaskStoreError.webhookTakenOver("t")) {
            try await a.tasks.updateCallback("t") { $0.state = .failed }
        }
        let delivered = try await b.tasks.updateCallback("t") {
            $0.attempts.append(attempt)
            $0.state = .delivered
        }
        #expect(delivered.callback?.state == .delivered && delivered.callback?.attempts.count == 1)
    }

    /// At graceful shutdown a box gives back the tasks it claimed but has not started: another box can
    /// claim them at once, long before the claims would have expired; a task already running stays.
    @Test func aBoxGivesBackTheTasksItHasNotStarted() async throws {
        let database = try await openDatabase()
        defer { Task { await database.close() } }
        let (a, b) = (Box("a", on: database), Box("b", on: database))
        _ = try await a.tasks.insert(StoreSuite.makeTask("t", at: Date(timeIntervalSinceNow: -2)))
        _ = try await a.tasks.insert(StoreSuite.makeTask("u", at: Date(timeIntervalSinceNow: -1)))
        #expect(try await a.claims.claim(.init(), claimSeconds: 300)?.id == "t")
        #expect(try await a.claims.claim(.init(), claimSeconds: 300)?.id == "u")
        try await a.tasks.update("u") { $0.state = .running }
        #expect(try await b.claims.claim(.init(), claimSeconds: 300) == nil, "both are a's")
        try await a.claims.giveBack(["t", "u"])
        #expect(try await b.claims.claim(.init(), claimSeconds: 300)?.id == "t")
        #expect(try await b.claims.claim(.init(), claimSeconds: 300) == nil, "the running one stays a's")
        try await a.tasks.update("u") { $0.state = .succeeded }
    }
}

/// A user's unfinished tasks across a fleet, for the per-user queue limits: each box reads those the
/// others accepted, finds again those it accepted before a restart, and learns which it counts have ended.
@Suite struct PostgresUnfinishedUsageTests {
    @Test func eachBoxReadsWhatTheOthersAccepted() async throws {
        let database = try await PostgresTaskClaimsTests().openDatabase()
        defer { Task { await database.close() } }
        let (a, b) = (PostgresTaskClaimsTests.Box("a", on: database), PostgresTaskClaimsTests.Box("b", on: database))
        let (usageA, usageB) = (PostgresUnfinishedUsage(database: database, node: "a"), PostgresUnfinishedUsage(database: database, node: "b"))
        let bytes = StoreSuite.makeTask().request.storageSize
        _ = try await a.tasks.insert(StoreSuite.makeTask("a1", user: "u"))
        _ = try await a.tasks.insert(StoreSuite.makeTask("a2", user: "u"))
        _ = try await b.tasks.insert(StoreSuite.makeTask("b1", user: "u"))
        _ = try await b.tasks.insert(StoreSuite.makeTask("b2", user: "v"))
        #expect(try await usageA.elsewhere(of: "u", upTo: 10) == (1, bytes))
        #expect(try await usageB.elsewhere(of: "u", upTo: 10) == (2, 2 * bytes))
        #expect(try await usageB.elsewhere(of: "u", upTo: 1) == (1, bytes), "counted up to the limit")
        #expect(try await usageA.elsewhere(of: "v", upTo: 10) == (1, bytes))
        #expect(try await usageB.elsewhere(of: "v", upTo: 10) == (0, 0))
        #expect(try await usageA.acceptedHere().map(\.id).sorted() == ["a1", "a2"])
        #expect(try await usageA.acceptedHere().allSatisfy { $0.user == "u" && $0.bytes == bytes })

        _ = try await a.tasks.update("a1") { $0.state = .cancelled }
        #expect(try await usageB.elsewhere(of: "u", upTo: 10) == (1, bytes), "a final task no longer counts")
        #expect(try await usageA.ended(among: ["a1", "a2", "missing"]) == ["a1"])
        #expect(try await usageA.ended(among: []) == [])
    }
}

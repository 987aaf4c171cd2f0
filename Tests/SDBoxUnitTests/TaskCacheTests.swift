import Foundation
import SDBoxCore
import Testing

@testable import Storage

@Suite struct TaskCacheTests {
    func task(_ id: String, attempts: Int = 0) -> TaskRecord {
        var task = TaskRecord(id: id, kind: .txt2img, model: "demo.safetensors", user: "default", request: ["prompt": "fox"])
        task.attempts = attempts
        return task
    }

    func changes(_ cache: TaskCache, _ tasks: TaskRecord...) throws -> TaskCache.Changes {
        var changes = TaskCache.Changes(version: cache.version())
        for task in tasks { _ = try changes.stored(RecordCoding.encode(task)) }
        return changes
    }

    func attempts(_ cache: TaskCache, _ id: String) -> Int? {
        if case .task(let task) = cache.lookup(id) { return task.attempts }
        return nil
    }

    @Test func theLaterWriteWinsWhicheverEndsFirst() throws {
        let cache = TaskCache()
        cache.beginWrite()
        cache.beginWrite()
        let first = try changes(cache, task("a", attempts: 1))
        let second = try changes(cache, task("a", attempts: 2))
        cache.endWrite(second)
        cache.endWrite(first)
        #expect(attempts(cache, "a") == 2)
    }

    @Test func aReadFillsOnlyWhenNoWriteRanMeanwhile() throws {
        let cache = TaskCache()
        let early = try #require(cache.readTicket())
        cache.beginWrite()
        #expect(cache.readTicket() == nil)
        cache.fill(task("a"), cost: 10, ticket: early)
        #expect(cache.lookup("a") == nil)
        cache.endWrite(TaskCache.Changes(version: cache.version()))
        cache.fill(task("a"), cost: 10, ticket: early)
        #expect(cache.lookup("a") == nil)
        cache.fill(task("a", attempts: 3), cost: 10, ticket: try #require(cache.readTicket()))
        #expect(attempts(cache, "a") == 3)
        // A fill never replaces what the cache holds.
        cache.fill(task("a", attempts: 4), cost: 10, ticket: try #require(cache.readTicket()))
        #expect(attempts(cache, "a") == 3)
    }

    @Test func dropsTheOldestAndNeverTakesBackAStaleWrite() throws {
        let cache = TaskCache(maxCount: 2)
        cache.beginWrite()
        let stale = try changes(cache, task("a", attempts: 1))
        for (id, attempts) in [("a", 2), ("b", 1), ("c", 1)] {
            cache.beginWrite()
            cache.endWrite(try changes(cache, task(id, attempts: attempts)))
        }
        #expect(cache.lookup("a") == nil)
        #expect(attempts(cache, "b") == 1 && attempts(cache, "c") == 1)
        // "a" at attempts 2 was dropped; the older write ending late must not bring back attempts 1.
        cache.endWrite(stale)
        #expect(cache.lookup("a") == nil)
    }

    @Test func keepsNoBigRecordNorARemovedOne() throws {
        let cache = TaskCache(maxCost: 16 * 1_000)
        cache.beginWrite()
        var big = task("big")
        big.request = ["prompt": .string(String(repeating: "x", count: 2_000))]
        cache.endWrite(try changes(cache, big, task("small")))
        guard case .tooBig = cache.lookup("big") else { Issue.record("a big record is cached"); return }
        #expect(attempts(cache, "small") == 0)

        cache.beginWrite()
        var removal = TaskCache.Changes(version: cache.version())
        removal.removed("small")
        cache.endWrite(removal)
        guard case .removed = cache.lookup("small") else { Issue.record("a removed task is still cached"); return }
    }

    @Test func aFailedWriteForgetsEverything() throws {
        let cache = TaskCache()
        for _ in 0..<3 { cache.beginWrite() }
        let late = try changes(cache, task("a", attempts: 1))
        cache.endWrite(try changes(cache, task("a", attempts: 2)))
        cache.endWrite(nil)
        #expect(cache.lookup("a") == nil)
        // A write that ends after the failure and is older than what was forgotten stays out.
        cache.endWrite(late)
        #expect(cache.lookup("a") == nil)
        #expect(cache.readTicket() != nil)
    }

    /// Many writers and readers at once: what `get` answers is what the database holds.
    @Test func theStoreAnswersWhatTheDatabaseHolds() async throws {
        let directory = try TemporaryDirectory()
        let database = try Database(path: directory.path)
        let store = LMDBTaskStore(database: database)
        var ids: [String] = []
        for _ in 0..<20 { ids.append(try await store.insert(task(TaskID.make())).id) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for round in 0..<10 {
                for id in ids {
                    group.addTask { try await store.update(id) { $0.attempts += 1 } }
                    group.addTask { _ = try await store.get(id) }
                    if round == 5 { group.addTask { try await store.update(id) { $0.state = .running } } }
                }
            }
            try await group.waitForAll()
        }
        for id in ids {
            let stored = try await database.read { txn, tables in try txn.record(TaskRecord.self, in: tables.tasks, key: id) }
            #expect(try await store.get(id) == stored)
            #expect(stored?.attempts == 10 && stored?.state == .running)
        }
        let old = Date().addingTimeInterval(60)
        try await store.update(ids[0]) { $0.state = .succeeded }
        #expect(try await store.remove([ids[0]], createdBefore: old) == 1)
        #expect(try await store.get(ids[0]) == nil)
    }
}

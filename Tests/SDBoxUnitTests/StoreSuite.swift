import Foundation
import SDBoxCore
import Storage
import Testing

/// The store suite: every method of the store protocols, with the same expectations of both backends,
/// LMDB (the embedded default) and PostgreSQL (a real server, ``PostgresTestSupport/PostgresServer``).
@Suite struct StoreSuite {
    static func makeTask(_ id: String = TaskID.make(), user: String = "default", model: String = "demo.safetensors", at date: Date = Date()) -> TaskRecord {
        TaskRecord(id: id, kind: .txt2img, model: model, user: user, request: ["prompt": "fox"], createdAt: date)
    }

    struct Boom: Error {}

    // MARK: Tasks

    @Test(arguments: StoreBackend.allCases)
    func tasksAreInsertedReadAndChanged(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let store = stores.tasks
        let task = try await store.insert(Self.makeTask())
        #expect(try await store.get(task.id) == task)
        #expect(try await store.get("missing") == nil)
        #expect(try await store.activeTasks().map(\.id) == [task.id])
        // An id that is taken gets a fresh one.
        let clash = try await store.insert(Self.makeTask(task.id))
        #expect(clash.id != task.id && TaskID.isWellFormed(clash.id))

        let running = try await store.update(task.id) {
            $0.state = .running
            $0.attempts += 1
            $0.id = "renamed"
        }
        #expect(running.state == .running && running.attempts == 1 && running.id == task.id, "the id never changes")
        #expect(try await store.get(task.id) == running)
        try await store.update(task.id) {
            $0.state = .succeeded
            $0.result = TaskResult(images: ["images/default/\(task.id)_1.png"], info: ["seed": 1], parameters: [:])
        }
        #expect(try await store.activeTasks().map(\.id) == [clash.id])
        #expect(try await store.get(task.id)?.result?.images.count == 1)
    }

    @Test(arguments: StoreBackend.allCases)
    func insertUnlessPresentWritesOnce(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let first = try await stores.tasks.insertUnlessPresent(Self.makeTask("client-chosen", user: "ann"))
        #expect(first.inserted && first.task.user == "ann")
        let again = try await stores.tasks.insertUnlessPresent(Self.makeTask("client-chosen", user: "bob"))
        #expect(!again.inserted && again.task == first.task, "the existing task is answered, unchanged")
        // Many at once: one writes, the others get its task.
        let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<20 {
                group.addTask { try await stores.tasks.insertUnlessPresent(Self.makeTask("raced", user: "u\(index)")).inserted }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 1)
    }

    @Test(arguments: StoreBackend.allCases)
    func changesAreCheckedAndAtomic(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let store = stores.tasks
        let task = try await store.insert(Self.makeTask())
        await #expect(throws: TaskStoreError.invalidTransition(id: task.id, from: .queued, to: .succeeded)) {
            try await store.update(task.id) { $0.state = .succeeded }
        }
        // A change that throws writes nothing of what it set before throwing.
        await #expect(throws: Boom.self) {
            try await store.update(task.id) {
                $0.error = "half-done"
                throw Boom()
            }
        }
        #expect(try await store.get(task.id)?.error == nil)
        // Concurrent changes each see the one before: none is lost.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<30 {
                group.addTask { try await store.update(task.id) { $0.priority += 1 } }
            }
            try await group.waitForAll()
        }
        #expect(try await store.get(task.id)?.priority == 30)
        try await store.update(task.id) { $0.state = .cancelled }
        await #expect(throws: TaskStoreError.self) { try await store.update(task.id) { $0.state = .queued } }
        await #expect(throws: TaskStoreError.self, "a final task cannot be changed at all") {
            try await store.update(task.id) { $0.error = "rewritten" }
        }
        await #expect(throws: TaskStoreError.notFound("nope")) { try await store.update("nope") { $0.state = .running } }
        await #expect(throws: TaskStoreError.notFound("nope")) { try await store.updateCallback("nope") { $0.state = .failed } }
    }

    @Test(arguments: StoreBackend.allCases)
    func callbacksStayPendingUntilDeliveredEvenOnceFinal(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let store = stores.tasks
        let base = Date(timeIntervalSince1970: 1_700_000_000)
        var hooked = Self.makeTask("hooked", at: base + 1)
        hooked.callback = TaskCallback(url: "http://127.0.0.1:9/hook", baseURL: nil)
        var earlier = Self.makeTask("earlier", at: base)
        earlier.callback = TaskCallback(url: "http://127.0.0.1:9/hook", baseURL: nil)
        _ = try await store.insert(hooked)
        _ = try await store.insert(earlier)
        let plain = try await store.insert(Self.makeTask("plain", at: base + 2))
        #expect(try await store.pendingCallbacks().isEmpty, "a webhook is due once its task is final")
        try await store.update("hooked") { $0.state = .cancelled }
        #expect(try await store.pendingCallbacks().map(\.id) == ["hooked"])
        try await store.update("earlier") { $0.state = .cancelled }
        #expect(try await store.pendingCallbacks().map(\.id) == ["earlier", "hooked"], "a final task's webhook is still due, oldest first")
        let delivered = try await store.updateCallback("hooked") { $0.state = .delivered }
        #expect(delivered.callback?.state == .delivered && delivered.state == .cancelled)
        #expect(try await store.pendingCallbacks().map(\.id) == ["earlier"])
        #expect(try await store.updateCallback(plain.id) { $0.state = .failed } == plain, "no webhook: nothing changes")
        await #expect(throws: Boom.self) { try await store.updateCallback("earlier") { _ in throw Boom() } }
        #expect(try await store.pendingCallbacks().map(\.id) == ["earlier"])
    }

    @Test(arguments: StoreBackend.allCases)
    func recentListsNewestFirstPerUserAndFilters(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let store = stores.tasks
        let base = Date(timeIntervalSince1970: 1_700_000_000)
        for index in 0..<10 {
            let task = Self.makeTask(
                "t\(index)", user: index % 2 == 0 ? "alice" : "bob", model: index % 2 == 0 ? "even.safetensors" : "odd.safetensors",
                at: base + Double(index)
            )
            _ = try await store.insert(task)
            if index % 3 == 0 { try await store.update(task.id) { $0.state = .cancelled } }
        }
        #expect(try await store.recent(limit: 3).tasks.map(\.id) == ["t9", "t8", "t7"])
        #expect(try await store.recent(limit: 3, user: "alice").tasks.map(\.id) == ["t8", "t6", "t4"])
        #expect(try await store.recent(limit: 0).tasks.isEmpty)
        // Pages of three, each continuing from the previous page's `next`, until there is no `next`.
        var pages: [[String]] = []
        var before: String?
        repeat {
            let page = try await store.recent(limit: 3, user: nil, filter: TaskFilter(before: before))
            pages.append(page.tasks.map(\.id))
            before = page.next
        } while before != nil
        #expect(pages == [["t9", "t8", "t7"], ["t6", "t5", "t4"], ["t3", "t2", "t1"], ["t0"]])

        let cancelled = try await store.recent(limit: 10, user: nil, filter: TaskFilter(states: [.cancelled]))
        #expect(cancelled.tasks.map(\.id) == ["t9", "t6", "t3", "t0"] && cancelled.next == nil)
        let cancelledPage = try await store.recent(limit: 2, user: nil, filter: TaskFilter(states: [.cancelled]))
        #expect(cancelledPage.tasks.map(\.id) == ["t9", "t6"] && cancelledPage.next == TaskFilter.position(at: base + 6) + "_t6")
        let odd = try await store.recent(limit: 10, user: nil, filter: TaskFilter(states: [.queued], model: "odd.safetensors"))
        #expect(odd.tasks.map(\.id) == ["t7", "t5", "t1"])
        #expect(try await store.recent(limit: 10, user: "alice", filter: TaskFilter(model: "odd.safetensors")).tasks.isEmpty)
        // A time as `before` lists tasks created before it; `since` those created at or after it.
        let window = TaskFilter(before: TaskFilter.position(at: base + 6), since: base + 2)
        #expect(try await store.recent(limit: 10, user: nil, filter: window).tasks.map(\.id) == ["t5", "t4", "t3", "t2"])
        // A rare match stops after the scan limit, with a `next` that resumes the search.
        var sparse = TaskFilter(states: [.cancelled])
        sparse.scanLimit = 2
        let first = try await store.recent(limit: 10, user: nil, filter: sparse)
        #expect(first.tasks.map(\.id) == ["t9"] && first.next == TaskFilter.position(at: base + 8) + "_t8")
        sparse.before = first.next
        #expect(try await store.recent(limit: 10, user: nil, filter: sparse).tasks.map(\.id) == ["t6"])
        #expect(try await store.recent(limit: 10, user: nil, filter: TaskFilter(before: "999999999999999")).tasks.count == 10)
    }

    @Test(arguments: StoreBackend.allCases)
    func finishedTasksAreListedAndRemovedOldestFirst(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let store = stores.tasks
        let base = Date(timeIntervalSince1970: 1_700_000_000)
        for index in 0..<6 {
            _ = try await store.insert(Self.makeTask("f\(index)", at: base + Double(index)))
            if index != 2 {
                try await store.update("f\(index)") { $0.state = .running }
                try await store.update("f\(index)") { $0.state = index % 2 == 0 ? .succeeded : .failed }
            }
        }
        // f2 is still queued; f5 was created at the bound, not before it.
        #expect(try await store.finishedTasks(createdBefore: base + 5, limit: 10).map(\.id) == ["f0", "f1", "f3", "f4"])
        #expect(try await store.finishedTasks(createdBefore: base + 5, limit: 2).map(\.id) == ["f0", "f1"])
        #expect(try await store.remove(["f0", "f2", "f4", "f5", "unknown"], createdBefore: base + 5) == 2)
        #expect(try await store.get("f0") == nil)
        #expect(try await store.get("f4") == nil)
        #expect(try await store.get("f2") != nil, "an active task is never removed")
        #expect(try await store.get("f5") != nil, "nor one created at or after the bound")
        #expect(try await store.recent(limit: 10).tasks.map(\.id) == ["f5", "f3", "f2", "f1"])
        #expect(try await store.remove([], createdBefore: base + 10) == 0)
    }

    // MARK: Catalog

    @Test(arguments: StoreBackend.allCases)
    func modelsAndPools(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let catalog = stores.catalog
        let date = Date(timeIntervalSince1970: 1_700_000_000)
        func model(_ type: ModelType, _ name: String) -> ModelRecord {
            ModelRecord(type: type, name: name, ossPath: "/m/\(name)", etag: "", status: .unloaded, size: 7, registeredTime: date, lastModificationTime: date)
        }
        try await catalog.save(model(.stableDiffusion, "b.safetensors"))
        try await catalog.save(model(.stableDiffusion, "a.safetensors"))
        try await catalog.save(model(.lora, "style.safetensors"))
        #expect(try await catalog.models().map(\.name).sorted() == ["a.safetensors", "b.safetensors", "style.safetensors"])
        #expect(try await catalog.model(.lora, named: "style.safetensors") == model(.lora, "style.safetensors"))
        #expect(try await catalog.model(.stableDiffusion, named: "style.safetensors") == nil)
        #expect(Set(try await catalog.pools().map(\.model)) == ["a.safetensors", "b.safetensors"], "a checkpoint gets a pool, a LoRA none")
        var updated = model(.stableDiffusion, "a.safetensors")
        updated.status = .loaded
        try await catalog.save(updated)
        #expect(try await catalog.model(.stableDiffusion, named: "a.safetensors")?.status == .loaded)

        let pool = try await catalog.updatePool(model: "a.safetensors") { $0.settings.maxInstances = 3 }
        #expect(pool.settings.maxInstances == 3 && pool.functionName == PoolRecord.name(forModel: "a.safetensors"))
        try await catalog.save(updated)
        #expect(try await catalog.pools().first { $0.model == "a.safetensors" }?.settings.maxInstances == 3, "saving a model keeps its pool's settings")
        #expect(try await catalog.updatePool(model: "new.safetensors") { $0.settings.maxInstances = 2 }.settings.maxInstances == 2, "made when missing")
        #expect(try await catalog.removePool(model: "new.safetensors"))
        #expect(try await catalog.removePool(model: "new.safetensors") == false)
        try await catalog.ensurePool(model: "new.safetensors")
        try await catalog.ensurePool(model: "new.safetensors")
        #expect(try await catalog.pools().filter { $0.model == "new.safetensors" }.map(\.settings) == [PoolSettings()], "back with default settings")
        // A checkpoint's record kept as deleted (the original's DELETE) takes its pool with it, in the same
        // write; registered again, it gets a pool with default settings.
        var tombstone = model(.stableDiffusion, "b.safetensors")
        tombstone.status = .deleted
        try await catalog.save(tombstone)
        #expect(try await catalog.model(.stableDiffusion, named: "b.safetensors")?.status == .deleted)
        #expect(!(try await catalog.pools().map(\.model).contains("b.safetensors")), "a deleted model has no pool")
        try await catalog.save(model(.stableDiffusion, "b.safetensors"))
        #expect(try await catalog.pools().filter { $0.model == "b.safetensors" }.map(\.settings) == [PoolSettings()])
        try await catalog.removeModel(.stableDiffusion, named: "a.safetensors")
        #expect(try await catalog.model(.stableDiffusion, named: "a.safetensors") == nil)
        #expect(Set(try await catalog.pools().map(\.model)) == ["b.safetensors", "new.safetensors"])
        let names = try await catalog.pools().map(\.functionName)
        #expect(names == names.sorted(), "pools by function name")
    }

    @Test(arguments: StoreBackend.allCases)
    func settingsAreKeptAndQuotasCountTheirChanges(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let catalog = stores.catalog
        #expect(try await catalog.options(forUser: "alice").isEmpty)
        _ = try await catalog.updateOptions(forUser: "alice", ["a": 1, "b": "old"])
        #expect(try await catalog.updateOptions(forUser: "alice", ["b": "x"]) == ["a": 1, "b": "x"])
        #expect(try await catalog.options(forUser: "alice") == ["a": 1, "b": "x"])
        #expect(try await catalog.options(forUser: "bob").isEmpty)

        #expect(try await catalog.remoteWorkers().isEmpty)
        let workers = [RemoteWorkerSettings(name: "gpu2", url: "http://10.0.0.2:7860", models: ["a.safetensors"]), RemoteWorkerSettings(name: "gpu1", url: "http://h:1")]
        try await catalog.saveRemoteWorkers(workers)
        #expect(try await catalog.remoteWorkers() == workers, "in the order they were added")
        #expect(try await catalog.queuePause() == QueuePause())
        try await catalog.saveQueuePause(QueuePause(all: false, models: ["a.safetensors"]))
        #expect(try await catalog.queuePause() == QueuePause(all: false, models: ["a.safetensors"]))
        #expect(try await catalog.modelInstalls().isEmpty)
        let install = ModelInstall(
            id: "i1", link: "https://example.org/m.safetensors", site: "web", revision: nil, declaredType: .lora, name: "m.safetensors", overwrite: false,
            sha256: nil, createdAt: Date(timeIntervalSince1970: 1_700_000_000)
        )
        try await catalog.saveModelInstalls([install])
        #expect(try await catalog.modelInstalls() == [install])

        #expect(try await catalog.quotas() == QuotaTable())
        let quotas = try await catalog.updateQuotas { $0.users["ann"] = Quota(imagesPerDay: 5) }
        #expect(quotas.revision == 1 && quotas.users["ann"]?.imagesPerDay == 5)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<20 {
                group.addTask { _ = try await catalog.updateQuotas { $0.keys["k\(index)"] = Quota(imagesPerMonth: index) } }
            }
            try await group.waitForAll()
        }
        let after = try await catalog.quotas()
        #expect(after.revision == 21 && after.keys.count == 20 && after.users.count == 1, "no change lost")
    }

    // MARK: Keys

    @Test(arguments: StoreBackend.allCases)
    func keysAreCheckedListedAndRevoked(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let keys = stores.keys()
        let (older, olderKey) = APIKeyRecord.make(user: "ann", role: .user, now: Date(timeIntervalSince1970: 1_700_000_000))
        let (newer, _) = APIKeyRecord.make(user: "bob", role: .admin, now: Date(timeIntervalSince1970: 1_700_000_100))
        try await keys.insert(newer)
        try await keys.insert(older)
        #expect(try await keys.list().map(\.id) == [older.id, newer.id], "oldest first")
        #expect(try await keys.list().allSatisfy { $0.secretHash != olderKey })
        #expect(try await keys.authenticate(olderKey)?.user == "ann")
        let wrongSecret = String(olderKey.dropLast()) + (olderKey.hasSuffix("a") ? "b" : "a")
        #expect(try await keys.authenticate(wrongSecret) == nil)
        #expect(try await keys.authenticate("sdbox_nonsense") == nil)
        let revokedAt = Date(timeIntervalSince1970: 1_700_000_200)
        #expect(try await keys.revoke(older.id, at: revokedAt)?.revokedAt == revokedAt)
        #expect(try await keys.revoke(older.id, at: revokedAt + 50)?.revokedAt == revokedAt, "revoked once")
        #expect(try await keys.authenticate(olderKey) == nil)
        #expect(try await keys.revoke("unknown") == nil)
        #expect(try await keys.list().first { $0.id == older.id }?.revokedAt == revokedAt)
    }

    /// A key revoked through another store on the same data (another process, another box) stops working
    /// within the recheck interval.
    @Test(arguments: StoreBackend.allCases)
    func aRevocationElsewhereTakesEffectWithinTheInterval(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let server = stores.keys(recheckInterval: .seconds(5))
        let elsewhere = stores.keys()
        let (record, key) = APIKeyRecord.make(user: "ann", role: .admin)
        try await elsewhere.insert(record)
        let start = ContinuousClock.now
        #expect(try await server.authenticate(key, now: start)?.role == .admin)
        _ = try await elsewhere.revoke(record.id)
        #expect(try await server.authenticate(key, now: start.advanced(by: .seconds(4))) != nil)
        #expect(try await server.authenticate(key, now: start.advanced(by: .seconds(6))) == nil)
    }

    // MARK: Users

    @Test(arguments: StoreBackend.allCases)
    func usersAreSavedListedAndRemovedWithTheirSessions(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let store = stores.users
        let created = Date(timeIntervalSince1970: 1_700_000_000)
        try await store.save(UserRecord(name: "zoe", role: .user, passwordHash: "z", createdAt: created))
        try await store.save(UserRecord(name: "ann", role: .user, passwordHash: "x", createdAt: created))
        try await store.save(UserRecord(name: "ann", role: .admin, passwordHash: "y", createdAt: created))
        #expect(try await store.users().map(\.name) == ["ann", "zoe"])
        #expect(try await store.user(named: "ann") == UserRecord(name: "ann", role: .admin, passwordHash: "y", createdAt: created), "replaced")
        #expect(try await store.user(named: "nobody") == nil)
        let ann = try #require(try await store.user(named: "ann"))
        let (session, token) = SessionRecord.make(for: ann)
        try await store.insert(session)
        let (zoeSession, zoeToken) = SessionRecord.make(for: UserRecord(name: "zoe", role: .user, passwordHash: "z"))
        try await store.insert(zoeSession)
        #expect(try await store.useSession(tokenHash: SessionRecord.hash(token), now: Date(), lifetime: 3600)?.user == "ann")
        #expect(try await store.removeUser(named: "ann"))
        #expect(try await store.removeUser(named: "ann") == false)
        #expect(try await store.useSession(tokenHash: SessionRecord.hash(token), now: Date(), lifetime: 3600) == nil, "its sessions ended")
        #expect(try await store.useSession(tokenHash: SessionRecord.hash(zoeToken), now: Date(), lifetime: 3600) != nil, "not the others'")
        for odd in ["", String(repeating: "x", count: 600)] {
            #expect(try await store.user(named: odd) == nil)
            #expect(try await store.removeUser(named: odd) == false)
        }
    }

    /// A session lives `lifetime` past its last use; a use renews it (written at most four times a lifetime).
    @Test(arguments: StoreBackend.allCases)
    func sessionsExpireUnusedAndAreRenewedByUse(backend: StoreBackend) async throws {
        let stores = try await backend.open()
        defer { Task { await stores.close() } }
        let store = stores.users
        let user = UserRecord(name: "ann", role: .user, passwordHash: "x")
        try await store.save(user)
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        let (session, token) = SessionRecord.make(for: user, now: t0)
        try await store.insert(session)
        let key = SessionRecord.hash(token)
        #expect(try await store.useSession(tokenHash: key, now: t0.addingTimeInterval(10), lifetime: 100)?.lastUsed == t0, "fresh: not written")
        #expect(try await store.useSession(tokenHash: key, now: t0.addingTimeInterval(80), lifetime: 100)?.user == "ann")
        #expect(try await store.useSession(tokenHash: key, now: t0.addingTimeInterval(170), lifetime: 100) != nil, "renewed at 80")
        #expect(try await store.useSession(tokenHash: key, now: t0.addingTimeInterval(280), lifetime: 100) == nil, "unused since 170")
        #expect(try await store.useSession(tokenHash: key, now: t0.addingTimeInterval(281), lifetime: 100) == nil, "and gone")
    }
}

import Foundation
import SDBoxCore
import Storage
import Testing

@Suite struct LMDBTests {
    @Test func putGetDeleteAndCursor() throws {
        let directory = try TemporaryDirectory()
        let environment = try LMDBEnvironment(path: directory.path)
        let table = try environment.openTable(named: "things")
        try environment.write { txn in
            try txn.put(table, key: "b", value: Array("two".utf8))
            try txn.put(table, key: "a", value: Array("one".utf8))
            try txn.put(table, key: "c", value: Array("three".utf8))
        }
        #expect(try environment.read { try $0.get(table, key: "a") } == Array("one".utf8))
        #expect(try environment.read { try $0.get(table, key: "missing") } == nil)
        let inserted = try environment.write { try $0.put(table, key: "a", value: Array("uno".utf8), overwrite: false) }
        #expect(inserted == false)
        #expect(try environment.read { try $0.get(table, key: "a") } == Array("one".utf8))

        var forward: [String] = []
        var backward: [String] = []
        try environment.read { txn in
            try txn.forEach(table) { key, _ in forward.append(key); return true }
            try txn.forEach(table, reverse: true) { key, _ in backward.append(key); return backward.count < 2 }
        }
        #expect(forward == ["a", "b", "c"])
        #expect(backward == ["c", "b"])
        // In reverse, `from` starts at the last key not greater than it.
        for (start, expected) in [("b", ["b", "a"]), ("bb", ["b", "a"]), ("z", ["c", "b", "a"]), ("0", [])] {
            var keys: [String] = []
            try environment.read { txn in try txn.forEach(table, from: start, reverse: true) { key, _ in keys.append(key); return true } }
            #expect(keys == expected, "from \(start)")
        }

        #expect(try environment.write { try $0.delete(table, key: "b") })
        #expect(try environment.write { try $0.delete(table, key: "b") } == false)
    }

    @Test func abortedWriteLeavesNothing() throws {
        let directory = try TemporaryDirectory()
        let environment = try LMDBEnvironment(path: directory.path)
        let table = try environment.openTable(named: "things")
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try environment.write { txn -> Void in
                try txn.put(table, key: "k", value: [1, 2, 3])
                throw Boom()
            }
        }
        #expect(try environment.read { try $0.get(table, key: "k") } == nil)
    }

    @Test func dataSurvivesReopening() throws {
        let directory = try TemporaryDirectory()
        do {
            let environment = try LMDBEnvironment(path: directory.path)
            let table = try environment.openTable(named: "things")
            _ = try environment.write { try $0.put(table, key: "k", value: [7]) }
        }
        let environment = try LMDBEnvironment(path: directory.path)
        let table = try environment.openTable(named: "things")
        #expect(try environment.read { try $0.get(table, key: "k") } == [7])
    }

    @Test func aCopyTakenWhileWritesGoOnIsOneCommittedState() async throws {
        let directory = try TemporaryDirectory()
        let environment = try LMDBEnvironment(path: directory.path + "/db")
        let table = try environment.openTable(named: "things")
        // Each commit writes the same counter under two keys: a consistent copy has them equal.
        try environment.write { txn in
            try txn.put(table, key: "a", value: Array("0".utf8))
            try txn.put(table, key: "b", value: Array("0".utf8))
        }
        let writer = Task.detached {
            for count in 1...2000 {
                try environment.write { txn in
                    try txn.put(table, key: "a", value: Array("\(count)".utf8))
                    try txn.put(table, key: "filler-\(count)", value: [UInt8](repeating: 1, count: 512))
                    try txn.put(table, key: "b", value: Array("\(count)".utf8))
                }
            }
        }
        try await Task.sleep(for: .milliseconds(20))
        try FileManager.default.createDirectory(atPath: directory.path + "/copy", withIntermediateDirectories: true)
        try LMDBEnvironment.copy(environmentAt: directory.path + "/db", to: directory.path + "/copy/data.mdb")
        #expect(throws: LMDBError.self, "an existing file is not overwritten") {
            try LMDBEnvironment.copy(environmentAt: directory.path + "/db", to: directory.path + "/copy/data.mdb")
        }
        try await writer.value
        let copy = try LMDBEnvironment(path: directory.path + "/copy")
        let copied = try copy.openTable(named: "things")
        let (a, b) = try copy.read { (try $0.get(copied, key: "a"), try $0.get(copied, key: "b")) }
        #expect(a != nil && a == b)
    }
}

@Suite struct TaskStoreTests {
    func makeTask(_ id: String = TaskID.make(), user: String = "default", at date: Date = Date()) -> TaskRecord {
        TaskRecord(id: id, kind: .txt2img, model: "demo.safetensors", user: user, request: ["prompt": "fox"], createdAt: date)
    }

    @Test func insertUpdateAndActiveIndex() async throws {
        let directory = try TemporaryDirectory()
        let store = LMDBTaskStore(database: try Database(path: directory.path))
        let task = try await store.insert(makeTask())
        #expect(try await store.get(task.id) == task)
        #expect(try await store.activeTasks().map(\.id) == [task.id])

        let running = try await store.update(task.id) {
            $0.state = .running
            $0.attempts += 1
        }
        #expect(running.state == .running && running.attempts == 1)
        #expect(try await store.activeTasks().map(\.id) == [task.id])

        try await store.update(task.id) {
            $0.state = .succeeded
            $0.result = TaskResult(images: ["images/default/\(task.id)_1.png"], info: ["seed": 1], parameters: [:])
        }
        #expect(try await store.activeTasks().isEmpty)
        #expect(try await store.get(task.id)?.result?.images.count == 1)
    }

    /// Concurrent writes are committed in groups: each caller gets its own outcome, a write that fails
    /// (here a forbidden move) undoes only its own changes, and everything answered is on disk.
    @Test func concurrentWritesCommitTogetherAndFailAlone() async throws {
        let directory = try TemporaryDirectory()
        let ids: [String]
        do {
            let store = LMDBTaskStore(database: try Database(path: directory.path))
            let done = try await store.insert(makeTask())
            try await store.update(done.id) { $0.state = .running }
            try await store.update(done.id) { $0.state = .succeeded }
            ids = try await withThrowingTaskGroup(of: String?.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        if index % 10 == 0 {
                            // Refused: a finished task cannot run again; the writes beside it stand.
                            await #expect(throws: TaskStoreError.self) { try await store.update(done.id) { task in task.state = .running } }
                            return nil
                        }
                        return try await store.insert(makeTask()).id
                    }
                }
                return try await group.reduce(into: []) { if let id = $1 { $0.append(id) } }
            }
            #expect(ids.count == 180)
            #expect(try await store.get(done.id)?.state == .succeeded)
        }
        let reopened = LMDBTaskStore(database: try Database(path: directory.path))
        #expect(Set(try await reopened.activeTasks().map(\.id)) == Set(ids))
    }

    @Test func refusesInvalidTransitions() async throws {
        let directory = try TemporaryDirectory()
        let store = LMDBTaskStore(database: try Database(path: directory.path))
        let task = try await store.insert(makeTask())
        await #expect(throws: TaskStoreError.invalidTransition(id: task.id, from: .queued, to: .succeeded)) {
            try await store.update(task.id) { $0.state = .succeeded }
        }
        try await store.update(task.id) { $0.state = .cancelled }
        await #expect(throws: TaskStoreError.self) {
            try await store.update(task.id) { $0.state = .queued }
        }
        // A final task cannot be changed at all, not even its other fields.
        await #expect(throws: TaskStoreError.self) {
            try await store.update(task.id) { $0.error = "rewritten" }
        }
        await #expect(throws: TaskStoreError.notFound("nope")) {
            try await store.update("nope") { $0.state = .running }
        }
    }

    @Test func recentListsNewestFirstPerUser() async throws {
        let directory = try TemporaryDirectory()
        let store = LMDBTaskStore(database: try Database(path: directory.path))
        let base = Date(timeIntervalSince1970: 1_700_000_000)
        for index in 0..<5 {
            _ = try await store.insert(makeTask("t\(index)", user: index % 2 == 0 ? "alice" : "bob", at: base + Double(index)))
        }
        #expect(try await store.recent(limit: 10).tasks.map(\.id) == ["t4", "t3", "t2", "t1", "t0"])
        #expect(try await store.recent(limit: 2, user: "alice").tasks.map(\.id) == ["t4", "t2"])
    }

    @Test func recentFiltersAndPages() async throws {
        let directory = try TemporaryDirectory()
        let store = LMDBTaskStore(database: try Database(path: directory.path))
        let base = Date(timeIntervalSince1970: 1_700_000_000)
        for index in 0..<10 {
            var task = makeTask("t\(index)", user: "alice", at: base + Double(index))
            task.model = index % 2 == 0 ? "even.safetensors" : "odd.safetensors"
            _ = try await store.insert(task)
            if index % 3 == 0 { try await store.update(task.id) { $0.state = .cancelled } }
        }
        // Pages of three, each continuing from the previous page's `next`, until there is no `next`.
        var pages: [[String]] = []
        var before: String?
        repeat {
            let page = try await store.recent(limit: 3, filter: TaskFilter(before: before))
            pages.append(page.tasks.map(\.id))
            before = page.next
        } while before != nil
        #expect(pages.flatMap { $0 } == (0..<10).reversed().map { "t\($0)" })
        #expect(pages.first == ["t9", "t8", "t7"])

        let cancelled = try await store.recent(limit: 10, filter: TaskFilter(states: [.cancelled]))
        #expect(cancelled.tasks.map(\.id) == ["t9", "t6", "t3", "t0"])
        #expect(cancelled.next == nil)
        let odd = try await store.recent(limit: 10, filter: TaskFilter(states: [.queued], model: "odd.safetensors"))
        #expect(odd.tasks.map(\.id) == ["t7", "t5", "t1"])
        // A time as `before` lists tasks created before it; `since` those created at or after it.
        let window = TaskFilter(before: TaskFilter.position(at: base + 6), since: base + 2)
        #expect(try await store.recent(limit: 10, filter: window).tasks.map(\.id) == ["t5", "t4", "t3", "t2"])
        // A rare match stops after the scan limit, with a `next` that resumes the search.
        var sparse = TaskFilter(states: [.cancelled])
        sparse.scanLimit = 2
        let first = try await store.recent(limit: 10, filter: sparse)
        #expect(first.tasks.map(\.id) == ["t9"])
        sparse.before = first.next
        #expect(try await store.recent(limit: 10, filter: sparse).tasks.map(\.id) == ["t6"])
        #expect(try await store.recent(limit: 10, filter: TaskFilter(before: "999999999999999")).tasks.count == 10)
    }

    @Test func optionsMergePerUser() async throws {
        let directory = try TemporaryDirectory()
        let catalog = LMDBCatalogStore(database: try Database(path: directory.path))
        _ = try await catalog.updateOptions(forUser: "alice", ["a": 1])
        let merged = try await catalog.updateOptions(forUser: "alice", ["b": "x"])
        #expect(merged == ["a": 1, "b": "x"])
        #expect(try await catalog.options(forUser: "bob").isEmpty)
    }
}

@Suite struct KeyStoreTests {
    @Test func checksKeysAndForgetsRevokedOnes() async throws {
        let directory = try TemporaryDirectory()
        let database = try Database(path: directory.path)
        let keys = LMDBKeyStore(database: database, recheckInterval: .seconds(5))
        let (record, key) = APIKeyRecord.make(user: "ann", role: .user)
        try await keys.insert(record)
        #expect(try await keys.authenticate(key)?.user == "ann")
        let wrongSecret = String(key.dropLast()) + (key.hasSuffix("a") ? "b" : "a")
        #expect(try await keys.authenticate(wrongSecret) == nil)
        #expect(try await keys.authenticate("sdbox_nonsense") == nil)
        _ = try await keys.revoke(record.id)
        #expect(try await keys.authenticate(key) == nil)
    }

    /// A key revoked by another process (another store on the same data) stops working within the interval.
    @Test func aRevocationElsewhereTakesEffectWithinTheInterval() async throws {
        let directory = try TemporaryDirectory()
        let database = try Database(path: directory.path)
        let server = LMDBKeyStore(database: database, recheckInterval: .seconds(5))
        let command = LMDBKeyStore(database: database)
        let (record, key) = APIKeyRecord.make(user: "ann", role: .admin)
        try await command.insert(record)
        let start = ContinuousClock.now
        #expect(try await server.authenticate(key, now: start)?.role == .admin)
        _ = try await command.revoke(record.id)
        #expect(try await server.authenticate(key, now: start.advanced(by: .seconds(4))) != nil)
        #expect(try await server.authenticate(key, now: start.advanced(by: .seconds(6))) == nil)
    }
}

@Suite struct UserStoreTests {
    /// A session lives `lifetime` past its last use; a use renews it (written at most four times a lifetime).
    @Test func sessionsExpireUnusedAndAreRenewedByUse() async throws {
        let directory = try TemporaryDirectory()
        let store = LMDBUserStore(database: try Database(path: directory.path))
        let user = UserRecord(name: "ann", role: .user, passwordHash: "x")
        try await store.save(user)
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        let (session, token) = SessionRecord.make(for: user, now: t0)
        try await store.insert(session)
        let key = SessionRecord.hash(token)
        #expect(token.count == 64 && key != token)
        #expect(try await store.useSession(tokenHash: key, now: t0.addingTimeInterval(80), lifetime: 100)?.user == "ann")
        #expect(try await store.useSession(tokenHash: key, now: t0.addingTimeInterval(170), lifetime: 100) != nil, "renewed at 80")
        #expect(try await store.useSession(tokenHash: key, now: t0.addingTimeInterval(280), lifetime: 100) == nil, "unused since 170")
        #expect(try await store.useSession(tokenHash: key, now: t0.addingTimeInterval(281), lifetime: 100) == nil, "and gone")
    }

    @Test func removingAUserEndsItsSessionsAndOddNamesAreNobody() async throws {
        let directory = try TemporaryDirectory()
        let store = LMDBUserStore(database: try Database(path: directory.path))
        let user = UserRecord(name: "ann", role: .admin, passwordHash: "x")
        try await store.save(user)
        let (session, token) = SessionRecord.make(for: user)
        try await store.insert(session)
        #expect(try await store.removeUser(named: "ann"))
        #expect(try await store.useSession(tokenHash: SessionRecord.hash(token), now: Date(), lifetime: 3600) == nil)
        for odd in ["", String(repeating: "x", count: 600)] {
            #expect(try await store.user(named: odd) == nil)
            #expect(try await store.removeUser(named: odd) == false)
        }
    }
}

@Suite struct TaskStateTests {
    @Test(arguments: TaskState.allCases)
    func finalStatesGoNowhere(state: TaskState) {
        if state.isFinal {
            #expect(TaskState.allCases.allSatisfy { !state.canMove(to: $0) })
        }
    }

    @Test func lifecycle() {
        #expect(TaskState.queued.canMove(to: .running))
        #expect(TaskState.queued.canMove(to: .cancelled))
        #expect(TaskState.running.canMove(to: .queued))
        #expect(TaskState.running.canMove(to: .succeeded))
        #expect(!TaskState.queued.canMove(to: .succeeded))
        #expect(!TaskState.running.canMove(to: .running))
    }

    @Test func idsAreShortUrlSafeAndDistinct() {
        let ids = (0..<1000).map { _ in TaskID.make() }
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0.count == 12 && TaskID.isWellFormed($0) })
        #expect(!TaskID.isWellFormed("../etc"))
        #expect(!TaskID.isWellFormed(""))
    }

    /// Every position of an id takes each of the 62 characters about equally often: 12,400 ids give each
    /// character 200 times a position on average; a position stuck on a few characters, or one that never
    /// shows some (a digit drawn from too few bits), is far outside 120...280.
    @Test func everyPositionOfAnIdUsesTheWholeAlphabetEvenly() {
        var counts = Array(repeating: [Character: Int](), count: 12)
        for _ in 0..<12_400 {
            for (position, character) in TaskID.make().enumerated() { counts[position][character, default: 0] += 1 }
        }
        for position in 0..<12 {
            #expect(counts[position].count == 62, "position \(position) used \(counts[position].count) characters")
            #expect(counts[position].values.allSatisfy { (120...280).contains($0) }, "position \(position): \(counts[position].values.sorted())")
        }
    }
}

/// A folder removed when the value goes away.
final class TemporaryDirectory: Sendable {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

@testable import Appliance
import Foundation
import ObjectStore
import SDBoxCore
import SDBoxServer
import Storage
import Testing

@Suite struct RetentionSweeperTests {
    let directory: TemporaryDirectory
    let tasks: any TaskStore
    let objects: ObjectStore
    let day: TimeInterval = 86400

    init() throws {
        directory = try TemporaryDirectory()
        tasks = LMDBTaskStore(database: try Database(path: directory.path + "/db"))
        objects = try ObjectStore(root: directory.path + "/objects")
    }

    /// A task created at `createdAt`, finished (with one image and its thumbnail) unless `finished` is false.
    func task(createdAt: Date, finished: Bool = true) async throws -> TaskRecord {
        let task = try await tasks.insert(TaskRecord(id: TaskID.make(), kind: .txt2img, model: "m", user: "default", request: [:], createdAt: createdAt))
        guard finished else { return task }
        let image = ObjectKey.image(user: "default", taskID: task.id, index: 1)
        try await objects.put(Data("png".utf8), key: image)
        try await objects.put(Data("jpg".utf8), key: ObjectKey.thumbnail(ofImage: image))
        try await tasks.update(task.id) { $0.state = .running }
        return try await tasks.update(task.id) {
            $0.state = .succeeded
            $0.result = TaskResult(images: [image], info: [:], parameters: [:])
        }
    }

    @Test func removesOldFinishedTasksWithTheirImagesOnly() async throws {
        let now = Date()
        let old = try await task(createdAt: now - 10 * day)
        let oldButRunning = try await task(createdAt: now - 10 * day, finished: false)
        let recent = try await task(createdAt: now - 2 * day)
        try await objects.put(Data("input".utf8), key: "inputs/default/fox.png")
        let sweeper = RetentionSweeper(tasks: tasks, objects: objects, maxAge: .seconds(7 * day), interval: .seconds(3600), now: { now })

        let report = try await sweeper.sweep()
        #expect(report == RetentionSweeper.Report(tasks: 1, images: 1, inputs: 0))
        #expect(try await tasks.get(old.id) == nil)
        #expect(try await !objects.exists(old.result!.images[0]))
        #expect(try await !objects.exists(ObjectKey.thumbnail(ofImage: old.result!.images[0])))
        #expect(try await tasks.get(oldButRunning.id)?.state == .queued)
        #expect(try await tasks.get(recent.id) != nil)
        #expect(try await objects.exists(recent.result!.images[0]))
        #expect(try await tasks.recent(limit: 10).tasks.map(\.id).sorted() == [oldButRunning.id, recent.id].sorted())
        #expect(try await objects.exists("inputs/default/fox.png"))
        #expect(try await sweeper.sweep() == RetentionSweeper.Report())
    }

    @Test func timeMovingOnRemovesTheRestAndOldInputs() async throws {
        let start = Date()
        let clock = InjectedTime(start)
        let first = try await task(createdAt: start - 1 * day)
        let second = try await task(createdAt: start)
        try await objects.put(Data("input".utf8), key: "inputs/default/sub/fox.png")
        let sweeper = RetentionSweeper(tasks: tasks, objects: objects, maxAge: .seconds(7 * day), interval: .seconds(3600), now: { clock.now })
        #expect(try await sweeper.sweep() == RetentionSweeper.Report())

        clock.now = start + 6.5 * day
        #expect(try await sweeper.sweep() == RetentionSweeper.Report(tasks: 1, images: 1, inputs: 0))
        #expect(try await tasks.get(first.id) == nil)

        clock.now = start + 7.5 * day
        #expect(try await sweeper.sweep() == RetentionSweeper.Report(tasks: 1, images: 1, inputs: 1))
        #expect(try await tasks.get(second.id) == nil)
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/objects/inputs/default/sub"))
    }

    @Test func runsAsAServiceUntilCancelled() async throws {
        let now = Date()
        let old = try await task(createdAt: now - 30 * day)
        let sweeper = RetentionSweeper(tasks: tasks, objects: objects, maxAge: .seconds(day), interval: .milliseconds(10), now: { now + 0 })
        let running = Task { try await sweeper.run() }
        let deadline = ContinuousClock.now + .seconds(10)
        while try await tasks.get(old.id) != nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        running.cancel()
        try await running.value
        #expect(try await tasks.get(old.id) == nil)
    }
}

@Suite struct ObjectStoreSafetyTests {
    @Test func symbolicLinksOutOfTheRootAreRefused() async throws {
        let directory = try TemporaryDirectory()
        let outside = try TemporaryDirectory()
        try Data("secret".utf8).write(to: URL(fileURLWithPath: outside.path + "/secret.png"))
        let store = try ObjectStore(root: directory.path)
        try FileManager.default.createDirectory(atPath: directory.path + "/inputs", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: directory.path + "/inputs/out", withDestinationPath: outside.path)
        try FileManager.default.createSymbolicLink(atPath: directory.path + "/inputs/file.png", withDestinationPath: outside.path + "/secret.png")
        await #expect(throws: ObjectStoreError.invalidKey("inputs/file.png")) { try await store.get("inputs/file.png") }
        await #expect(throws: ObjectStoreError.invalidKey("inputs/out/secret.png")) { try await store.get("inputs/out/secret.png") }
        await #expect(throws: ObjectStoreError.invalidKey("inputs/out/new/x.png")) { try await store.put(Data("x".utf8), key: "inputs/out/new/x.png") }
        #expect(!FileManager.default.fileExists(atPath: outside.path + "/new"))
        // Sweeping removes the links, never what they point at.
        #expect(try await store.removeFiles(under: "inputs", modifiedBefore: Date() + 60) == 2)
        #expect(FileManager.default.fileExists(atPath: outside.path + "/secret.png"))
    }

    @Test func entityTagsChangeWhenAnObjectIsReplaced() async throws {
        let directory = try TemporaryDirectory()
        let store = try ObjectStore(root: directory.path)
        try await store.put(Data("one".utf8), key: "a/b.png")
        let first = try await store.info("a/b.png")
        #expect(first.size == 3)
        #expect(try await store.info("a/b.png") == first)
        try await store.put(Data("three".utf8), key: "a/b.png")
        #expect(try await store.info("a/b.png").etag != first.etag)
        await #expect(throws: ObjectStoreError.notFound("a/c.png")) { try await store.info("a/c.png") }
    }

    @Test func aWriteIntoTheDiskReserveFailsAsDiskFullAndLeavesNothing() async throws {
        let directory = try TemporaryDirectory()
        let store = try ObjectStore(root: directory.path, minimumFreeBytes: Int64.max / 2)
        await #expect(throws: ObjectStoreError.self) { try await store.put(Data("x".utf8), key: "images/u/t_1.png") }
        do {
            try await store.put(Data("x".utf8), key: "images/u/t_1.png")
        } catch {
            #expect("\(error)".hasPrefix("disk full: could not store 'images/u/t_1.png'"))
        }
        #expect((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) == [])
    }

    @Test func thumbnailKeysMirrorImageKeys() {
        #expect(ObjectKey.thumbnail(ofImage: "images/admin/1HmyrbhBJD_2.png") == "thumbnails/admin/1HmyrbhBJD_2.jpg")
    }
}

/// A wall clock the test moves by hand.
final class InjectedTime: @unchecked Sendable {
    // Safety: set and read by one test task at a time, through the lock.
    private let lock = NSLock()
    private var value: Date
    init(_ start: Date) { value = start }
    var now: Date {
        get { lock.withLock { value } }
        set { lock.withLock { value = newValue } }
    }
}

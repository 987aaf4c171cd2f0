import Foundation
import SDBoxCore

/// The ``TaskStore`` in LMDB: every task sdbox accepts is written here before it is answered, and every
/// change of state is a transaction that checks the move is allowed.
public struct LMDBTaskStore: TaskStore {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Writes a new task. The id must be new; a clash (astronomically unlikely) gets a fresh id.
    public func insert(_ task: TaskRecord) async throws -> TaskRecord {
        try await write { txn, tables, changes in
            var task = task
            while try txn.get(tables.tasks, key: task.id) != nil {
                task.id = TaskID.make()
            }
            return try Self.put(task, txn: txn, tables: tables, changes: &changes)
        }
    }

    public func insertUnlessPresent(_ task: TaskRecord) async throws -> (task: TaskRecord, inserted: Bool) {
        try await write { txn, tables, changes in
            if let existing = try txn.record(TaskRecord.self, in: tables.tasks, key: task.id) { return (existing, false) }
            return (try Self.put(task, txn: txn, tables: tables, changes: &changes), true)
        }
    }

    /// Writes a task whose id is free, with its indexes.
    private static func put(_ task: TaskRecord, txn: LMDBTransaction, tables: Database.Tables, changes: inout TaskCache.Changes) throws -> TaskRecord {
        let encoded = try RecordCoding.encode(task)
        try txn.put(tables.tasks, key: task.id, value: encoded, overwrite: false)
        try txn.put(tables.tasksByTime, key: timeKey(task), value: Array(task.id.utf8))
        if !task.state.isFinal {
            try txn.put(tables.activeTasks, key: task.id, value: [UInt8]())
        }
        try indexCallback(of: task, txn: txn, tables: tables)
        return try changes.stored(encoded)
    }

    /// The task `id`, from the cache when it has it.
    public func get(_ id: String) async throws -> TaskRecord? {
        let cache = database.taskCache
        switch cache.lookup(id) {
        case .task(let task): return task
        case .removed: return nil
        case .tooBig, nil: break
        }
        let ticket = cache.readTicket()
        let found = try await database.read { txn, tables in
            try txn.get(tables.tasks, key: id).map { (task: try RecordCoding.decode(TaskRecord.self, from: $0), cost: $0.count) }
        }
        if let ticket, let found {
            cache.fill(found.task, cost: found.cost, ticket: ticket)
        }
        return found?.task
    }

    /// Changes a task in one transaction. `change` may set any field; a change of state must be one
    /// ``TaskState/canMove(to:)`` allows, and a final task cannot be changed.
    @discardableResult
    public func update(_ id: String, _ change: @escaping @Sendable (inout TaskRecord) throws -> Void) async throws -> TaskRecord {
        try await write { txn, tables, changes in
            guard let old = try txn.record(TaskRecord.self, in: tables.tasks, key: id) else {
                throw TaskStoreError.notFound(id)
            }
            let task = try old.changed(by: change)
            let encoded = try RecordCoding.encode(task)
            try txn.put(tables.tasks, key: id, value: encoded)
            if task.state.isFinal {
                try txn.delete(tables.activeTasks, key: id)
            }
            try Self.indexCallback(of: task, txn: txn, tables: tables)
            return try changes.stored(encoded)
        }
    }

    /// Changes a task's webhook record, the one thing that still changes once a task is final.
    @discardableResult
    public func updateCallback(_ id: String, _ change: @escaping @Sendable (inout TaskCallback) throws -> Void) async throws -> TaskRecord {
        try await write { txn, tables, changes in
            guard let old = try txn.record(TaskRecord.self, in: tables.tasks, key: id) else {
                throw TaskStoreError.notFound(id)
            }
            guard let task = try old.changingCallback(by: change) else { return old }
            let encoded = try RecordCoding.encode(task)
            try txn.put(tables.tasks, key: id, value: encoded)
            try Self.indexCallback(of: task, txn: txn, tables: tables)
            return try changes.stored(encoded)
        }
    }

    /// Final tasks whose webhook is still pending (due for delivery), oldest first. The index also holds
    /// the unfinished tasks that have a webhook.
    public func pendingCallbacks() async throws -> [TaskRecord] {
        try await tasks(indexedIn: \.pendingCallbacks).filter(\.state.isFinal)
    }

    /// The tasks whose ids an index table holds, oldest first.
    private func tasks(indexedIn index: any KeyPath<Database.Tables, LMDBTable> & Sendable) async throws -> [TaskRecord] {
        try await database.read { txn, tables in
            var ids: [String] = []
            try txn.forEach(tables[keyPath: index]) { key, _ in
                ids.append(key)
                return true
            }
            return try ids.compactMap { try txn.record(TaskRecord.self, in: tables.tasks, key: $0) }
                .sorted { $0.createdAt < $1.createdAt }
        }
    }

    /// Runs a write transaction that changes tasks, then tells the cache what it committed.
    private func write<R: Sendable>(
        _ body: @escaping @Sendable (LMDBTransaction, Database.Tables, inout TaskCache.Changes) throws -> R
    ) async throws -> R {
        let cache = database.taskCache
        cache.beginWrite()
        let committed: (result: R, changes: TaskCache.Changes)
        do {
            committed = try await database.write { txn, tables in
                var changes = TaskCache.Changes(version: cache.version())
                return (try body(txn, tables, &changes), changes)
            }
        } catch let error as LMDBError {
            // LMDB aborts a transaction it cannot commit; the cache is emptied all the same, to be safe.
            cache.endWrite(nil)
            throw error
        } catch {
            // The change itself was refused (not found, a forbidden move): nothing was written.
            cache.endWrite(TaskCache.Changes(version: 0))
            throw error
        }
        cache.endWrite(committed.changes)
        return committed.result
    }

    static func indexCallback(of task: TaskRecord, txn: LMDBTransaction, tables: Database.Tables) throws {
        if task.callback?.state == .pending {
            try txn.put(tables.pendingCallbacks, key: task.id, value: [UInt8]())
        } else {
            try txn.delete(tables.pendingCallbacks, key: task.id)
        }
    }

    /// Tasks that are queued or running, oldest first.
    public func activeTasks() async throws -> [TaskRecord] {
        try await tasks(indexedIn: \.activeTasks)
    }

    /// Up to `limit` tasks, newest first, optionally only one user's and only those `filter` lets through.
    ///
    /// At most ``TaskFilter/scanLimit`` tasks are examined per call; the page's `next` then continues the
    /// listing where it stopped, so a filter that matches rarely never makes one call slow.
    public func recent(limit: Int, user: String? = nil, filter: TaskFilter = TaskFilter()) async throws -> TaskPage {
        try await database.read { txn, tables in
            var builder = TaskPageBuilder(limit: limit, filter: filter)
            let sinceKey = filter.since.map(Self.timeKey(millis:))
            try txn.forEach(tables.tasksByTime, from: filter.before, reverse: true) { key, value in
                if let before = filter.before, key >= before { return true }
                if let sinceKey, key < sinceKey { return false }
                return try builder.examine(key) {
                    let id = String(decoding: value, as: UTF8.self)
                    guard let task = try txn.record(TaskRecord.self, in: tables.tasks, key: id), user == nil || task.user == user,
                        filter.admits(task)
                    else { return nil }
                    return task
                }
            }
            return builder.page
        }
    }

    /// Up to `limit` final tasks created before `date`, oldest first (what retention removes).
    public func finishedTasks(createdBefore date: Date, limit: Int) async throws -> [TaskRecord] {
        let bound = Self.timeKey(millis: date)
        return try await database.read { txn, tables in
            var result: [TaskRecord] = []
            try txn.forEach(tables.tasksByTime) { key, value in
                guard key < bound, result.count < limit else { return false }
                let id = String(decoding: value, as: UTF8.self)
                if let task = try txn.record(TaskRecord.self, in: tables.tasks, key: id), task.state.isFinal {
                    result.append(task)
                }
                return true
            }
            return result
        }
    }

    /// Removes the records of the given tasks that are final and were created before `date`, with their
    /// place in the time index; a task that is still active is never removed. Returns how many went.
    @discardableResult
    public func remove(_ ids: Set<String>, createdBefore date: Date) async throws -> Int {
        let bound = Self.timeKey(millis: date)
        return try await write { txn, tables, changes in
            var doomed: [(indexKey: String, id: String)] = []
            try txn.forEach(tables.tasksByTime) { key, value in
                guard key < bound else { return false }
                let id = String(decoding: value, as: UTF8.self)
                if ids.contains(id), let task = try txn.record(TaskRecord.self, in: tables.tasks, key: id), task.state.isFinal {
                    doomed.append((key, id))
                }
                return true
            }
            for (indexKey, id) in doomed {
                try txn.delete(tables.tasksByTime, key: indexKey)
                try txn.delete(tables.tasks, key: id)
                changes.removed(id)
            }
            return doomed.count
        }
    }

    /// The position of `task` in the time index, which orders tasks by creation.
    static func timeKey(_ task: TaskRecord) -> String { TaskFilter.position(of: task) }

    static func timeKey(millis date: Date) -> String { TaskFilter.position(at: date) }
}

import Foundation
import SDBoxCore

/// Why a task could not be changed.
public enum TaskStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case notFound(String)
    case invalidTransition(id: String, from: TaskState, to: TaskState)

    public var description: String {
        switch self {
        case .notFound(let id): "task \(id) not found"
        case .invalidTransition(let id, let from, let to): "task \(id) cannot move from \(from.rawValue) to \(to.rawValue)"
        }
    }
}

/// Persistent tasks: every task sdbox accepts is written here before it is answered, and every change of
/// state is a transaction that checks the move is allowed.
public struct TaskStore: Sendable {
    let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Writes a new task. The id must be new; a clash (astronomically unlikely) gets a fresh id.
    public func insert(_ task: TaskRecord) async throws -> TaskRecord {
        try await database.write { txn, tables in
            var task = task
            while try txn.get(tables.tasks, key: task.id) != nil {
                task.id = TaskID.make()
            }
            let encoded = try RecordCoding.encode(task)
            try txn.put(tables.tasks, key: task.id, value: encoded, overwrite: false)
            try txn.put(tables.tasksByTime, key: Self.timeKey(task), value: Array(task.id.utf8))
            if !task.state.isFinal {
                try txn.put(tables.activeTasks, key: task.id, value: [UInt8]())
            }
            // Answer with the task as stored (dates at the store's millisecond precision).
            return try RecordCoding.decode(TaskRecord.self, from: [UInt8](encoded))
        }
    }

    public func get(_ id: String) async throws -> TaskRecord? {
        try await database.read { txn, tables in
            try txn.record(TaskRecord.self, in: tables.tasks, key: id)
        }
    }

    /// Changes a task in one transaction. `change` may set any field; a change of state must be one
    /// ``TaskState/canMove(to:)`` allows, and a final task cannot be changed.
    @discardableResult
    public func update(_ id: String, _ change: @escaping @Sendable (inout TaskRecord) throws -> Void) async throws -> TaskRecord {
        try await database.write { txn, tables in
            guard let old = try txn.record(TaskRecord.self, in: tables.tasks, key: id) else {
                throw TaskStoreError.notFound(id)
            }
            var task = old
            try change(&task)
            task.id = old.id
            if task.state != old.state || old.state.isFinal {
                guard old.state.canMove(to: task.state) else {
                    throw TaskStoreError.invalidTransition(id: id, from: old.state, to: task.state)
                }
            }
            let encoded = try RecordCoding.encode(task)
            try txn.put(tables.tasks, key: id, value: encoded)
            if task.state.isFinal {
                try txn.delete(tables.activeTasks, key: id)
            }
            return try RecordCoding.decode(TaskRecord.self, from: [UInt8](encoded))
        }
    }

    /// Tasks that are queued or running, oldest first.
    public func activeTasks() async throws -> [TaskRecord] {
        try await database.read { txn, tables in
            var ids: [String] = []
            try txn.forEach(tables.activeTasks) { key, _ in
                ids.append(key)
                return true
            }
            return try ids.compactMap { try txn.record(TaskRecord.self, in: tables.tasks, key: $0) }
                .sorted { $0.createdAt < $1.createdAt }
        }
    }

    /// Up to `limit` tasks, newest first, optionally only one user's.
    public func recent(limit: Int, user: String? = nil) async throws -> [TaskRecord] {
        try await database.read { txn, tables in
            var result: [TaskRecord] = []
            try txn.forEach(tables.tasksByTime, reverse: true) { _, value in
                let id = String(decoding: value, as: UTF8.self)
                if let task = try txn.record(TaskRecord.self, in: tables.tasks, key: id), user == nil || task.user == user {
                    result.append(task)
                }
                return result.count < limit
            }
            return result
        }
    }

    static func timeKey(_ task: TaskRecord) -> String {
        let millis = Int64(task.createdAt.timeIntervalSince1970 * 1000)
        let digits = String(millis)
        return String(repeating: "0", count: max(0, 15 - digits.count)) + digits + "_" + task.id
    }
}

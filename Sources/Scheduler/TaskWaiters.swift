/// Callers suspended until something about a task is known, by task id, each answered once: the
/// ``TaskRunner``'s waiters for final tasks and for early outcomes.
struct TaskWaiters<Value: Sendable> {
    private var byTask: [String: [Int: CheckedContinuation<Value, Never>]] = [:]
    private var next = 1

    /// Adds a waiter for task `id`; returns its number, for ``take(_:of:)``.
    mutating func add(_ waiter: CheckedContinuation<Value, Never>, for id: String) -> Int {
        let number = next
        next += 1
        byTask[id, default: [:]][number] = waiter
        return number
    }

    /// Takes one waiter out, if it is still waiting.
    mutating func take(_ number: Int, of id: String) -> CheckedContinuation<Value, Never>? {
        let waiter = byTask[id]?.removeValue(forKey: number)
        if byTask[id]?.isEmpty == true { byTask[id] = nil }
        return waiter
    }

    /// Takes every waiter of task `id` out.
    mutating func takeAll(of id: String) -> [CheckedContinuation<Value, Never>] {
        byTask.removeValue(forKey: id).map { Array($0.values) } ?? []
    }

    /// Whether nobody waits for task `id`.
    func isEmpty(for id: String) -> Bool { byTask[id] == nil }

    /// The tasks someone waits for.
    var ids: [String] { Array(byTask.keys) }
}

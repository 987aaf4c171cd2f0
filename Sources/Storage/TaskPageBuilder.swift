import SDBoxCore

/// Builds one page of ``TaskStore/recent(limit:user:filter:)`` from the tasks of the time index, newest
/// first, the same way in every store: at most ``TaskFilter/scanLimit`` tasks are examined, and when the
/// page is full or the scan stops early, `next` is the position of the last task examined.
struct TaskPageBuilder {
    let limit: Int
    let scanLimit: Int
    private(set) var page = TaskPage(tasks: [], next: nil)
    private var examined = 0
    private var lastExamined: String?

    init(limit: Int, filter: TaskFilter) {
        self.limit = limit
        self.scanLimit = filter.scanLimit
    }

    /// Examines the task at `position`; `admitted` gives it when it belongs on the page (nil otherwise).
    /// Returns false once the page is done: then nothing more is examined.
    mutating func examine(_ position: String, admitted: () throws -> TaskRecord?) rethrows -> Bool {
        guard page.tasks.count < limit, examined < scanLimit else {
            page.next = lastExamined
            return false
        }
        examined += 1
        lastExamined = position
        if let task = try admitted() { page.tasks.append(task) }
        return true
    }
}

extension TaskFilter {
    /// The position of `task` in the time index, which orders tasks by creation: ``position(at:)`` of
    /// its creation, `_`, its id.
    static func position(of task: TaskRecord) -> String {
        position(at: task.createdAt) + "_" + task.id
    }
}

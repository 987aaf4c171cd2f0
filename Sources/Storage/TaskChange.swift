import SDBoxCore

extension TaskRecord {
    /// This task as `change` leaves it, checked as every store checks a change: the id stays, a change of
    /// state must be one ``TaskState/canMove(to:)`` allows, and a final task cannot be changed at all.
    func changed(by change: (inout TaskRecord) throws -> Void) throws -> TaskRecord {
        var task = self
        try change(&task)
        task.id = id
        if task.state != state || state.isFinal {
            guard state.canMove(to: task.state) else {
                throw TaskStoreError.invalidTransition(id: id, from: state, to: task.state)
            }
        }
        return task
    }

    /// This task with its webhook record as `change` leaves it; nil when it has no webhook.
    func changingCallback(by change: (inout TaskCallback) throws -> Void) throws -> TaskRecord? {
        guard var callback else { return nil }
        try change(&callback)
        var task = self
        task.callback = callback
        return task
    }
}

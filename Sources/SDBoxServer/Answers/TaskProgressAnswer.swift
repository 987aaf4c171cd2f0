import SDBoxCore

/// `GET /tasks/{id}/progress`: A1111's progress with the original's camel-case keys, the task's status,
/// and its place in its queue while it waits.
struct TaskProgressAnswer: Encodable {
    let taskId: String
    let status: String
    let progress: Double
    let etaRelative: Double
    /// The live preview (base64), or `""` when there is none or the caller skipped it.
    var currentImage: String
    let state: A1111.State
    let queuePosition: Int?
}

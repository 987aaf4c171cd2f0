import Appliance
import SDBoxCore

/// One message of the live event streams (`GET /tasks/{id}/events` and the `/ws` WebSocket), named by its
/// `event` field and carrying its `taskId`: `queued`, `started`, `progress`, `preview`, then `finished`,
/// `failed` or `cancelled` with the task's result; `error` answers a WebSocket command sdbox cannot follow.
enum TaskEventAnswer: Encodable {
    case queued(taskId: String, position: Int, eta: Double?)
    case started(taskId: String, attempt: Int)
    case progress(taskId: String, step: Int, steps: Int, job: Int, jobs: Int, fraction: Double, eta: Double)
    case preview(taskId: String, image: String)
    case final(TaskResultAnswer)
    case error(taskId: String?, message: String)

    /// `event` of `taskId` as sent; nil for a heartbeat (SSE sends a comment, WebSocket pings cover it).
    init?(_ event: TaskEvent, taskId: String, result: (TaskRecord) -> TaskResultAnswer) {
        switch event {
        case .queued(let position, let eta): self = .queued(taskId: taskId, position: position, eta: eta)
        case .started(let attempt): self = .started(taskId: taskId, attempt: attempt)
        case .progress(let step, let steps, let job, let jobs, let fraction, let eta):
            self = .progress(taskId: taskId, step: step, steps: steps, job: job, jobs: jobs, fraction: fraction, eta: eta)
        case .preview(let image): self = .preview(taskId: taskId, image: image)
        case .heartbeat: return nil
        case .final(let task): self = .final(result(task))
        }
    }

    /// The `event` field: the SSE event name.
    var name: String {
        switch self {
        case .queued: "queued"
        case .started: "started"
        case .progress: "progress"
        case .preview: "preview"
        case .final(let result): result.status == TaskState.succeeded.apiName ? "finished" : result.status
        case .error: "error"
        }
    }

    enum CodingKeys: String, CodingKey {
        case event, taskId, position, etaRelative, attempt, step, steps, jobNo, jobCount, progress, image, error
    }

    func encode(to encoder: any Encoder) throws {
        if case .final(let result) = self { try result.encode(to: encoder) }
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .event)
        switch self {
        case .queued(let taskId, let position, let eta):
            try container.encode(taskId, forKey: .taskId)
            try container.encode(position, forKey: .position)
            try container.encode(eta, forKey: .etaRelative)
        case .started(let taskId, let attempt):
            try container.encode(taskId, forKey: .taskId)
            try container.encode(attempt, forKey: .attempt)
        case .progress(let taskId, let step, let steps, let job, let jobs, let fraction, let eta):
            try container.encode(taskId, forKey: .taskId)
            try container.encode(step, forKey: .step)
            try container.encode(steps, forKey: .steps)
            try container.encode(job, forKey: .jobNo)
            try container.encode(jobs, forKey: .jobCount)
            try container.encode(fraction, forKey: .progress)
            try container.encode(eta, forKey: .etaRelative)
        case .preview(let taskId, let image):
            try container.encode(taskId, forKey: .taskId)
            try container.encode(image, forKey: .image)
        case .final:
            break
        case .error(let taskId, let message):
            try container.encodeIfPresent(taskId, forKey: .taskId)
            try container.encode(message, forKey: .error)
        }
    }
}

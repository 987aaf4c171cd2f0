import HTTPTypes

/// The headers sdbox reads or sets beside HTTP's own, in one place.
extension HTTPField.Name {
    /// An API key (beside `Authorization: Bearer`).
    static let apiKey = Self("X-API-Key")!
    /// `sync` (the default) or `async`: whether to wait for the task's outcome.
    static let requestType = Self("Request-Type")!
    /// `true`: keep a passthrough call as a task.
    static let taskFlag = Self("Task-Flag")!
    /// Where to POST a task's result when it ends.
    static let callbackURL = Self("X-Callback-URL")!
    /// The checkpoint whose worker takes a passthrough call.
    static let sdModel = Self("X-SD-Model")!
    /// The task a `Task-Flag` call was persisted as.
    static let taskID = Self("Task-Id")!
    /// The original's `taskId`: on a submission, the id the client chooses for its task (which makes the
    /// submission idempotent); on the answer, the task's id.
    static let clientTaskID = Self("taskId")!

    /// The original's session token (from `POST /login`).
    static let token = Self("Token")!

    /// sdbox's own request headers, which are never forwarded to a worker.
    static let sdboxRequestHeaders: [HTTPField.Name] = [.apiKey, .requestType, .taskFlag, .callbackURL, .sdModel, .clientTaskID, .token]
}

import Foundation

/// Where a task is in its life. `succeeded`, `failed` and `cancelled` are final.
public enum TaskState: String, Codable, Sendable, CaseIterable {
    case queued, running, succeeded, failed, cancelled

    /// The state as the task API names it, the original's names: `waiting` for a queued task. The stored
    /// records, the configuration and the event streams' `queued` event keep `queued`; `?state=` filters
    /// accept both.
    public var apiName: String { self == .queued ? "waiting" : rawValue }

    /// The state an API name or a stored name stands for (`waiting` and `queued` alike).
    public init?(apiName: String) {
        self.init(rawValue: apiName == "waiting" ? "queued" : apiName)
    }

    public var isFinal: Bool {
        switch self {
        case .succeeded, .failed, .cancelled: true
        case .queued, .running: false
        }
    }

    /// Whether a task may move from this state to `next`. A running task goes back to `queued` when its
    /// worker or sdbox died under it, so that it runs again.
    public func canMove(to next: TaskState) -> Bool {
        switch (self, next) {
        case (.queued, .running), (.queued, .cancelled), (.queued, .failed): true
        case (.running, .succeeded), (.running, .failed), (.running, .cancelled), (.running, .queued): true
        default: false
        }
    }
}

/// What a finished task produced: a generation's images, `info` and `parameters`, or a passthrough
/// call's answer.
public struct TaskResult: Codable, Sendable, Equatable {
    /// Object-store keys of the output images, e.g. `images/default/<taskId>_1.png`.
    public var images: [String]
    /// The worker's `info`, parsed from the JSON string A1111 returns.
    public var info: JSONValue
    /// The parameters the worker reports having used.
    public var parameters: JSONValue
    /// A passthrough call's HTTP status, as the worker answered it.
    public var status: Int?
    /// A passthrough call's `Content-Type`, as the worker answered it.
    public var contentType: String?
    /// A passthrough call's JSON answer, each image in it replaced by its object key (one of `images`).
    public var response: JSONValue?
    /// The object key of a passthrough call's answer that is not JSON (its body as the worker sent it).
    public var bodyKey: String?

    public init(
        images: [String], info: JSONValue, parameters: JSONValue, status: Int? = nil, contentType: String? = nil,
        response: JSONValue? = nil, bodyKey: String? = nil
    ) {
        self.images = images
        self.info = info
        self.parameters = parameters
        self.status = status
        self.contentType = contentType
        self.response = response
        self.bodyKey = bodyKey
    }
}

/// A unit of work accepted by sdbox, persisted from the moment it is accepted until it is deleted.
public struct TaskRecord: Codable, Sendable, Equatable, Identifiable {
    public var id: String
    public var kind: TaskKind
    /// The checkpoint's file name in the models folder.
    public var model: String
    /// The user the task belongs to; the `<user>` in its image keys.
    public var user: String
    /// The body sent to the worker.
    public var request: JSONValue
    public var state: TaskState
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    /// How many times the task was handed to a worker.
    public var attempts: Int
    public var error: String?
    public var result: TaskResult?
    /// Orders the user's own tasks of one model: higher runs sooner (each level is worth a fixed wait, so
    /// a low-priority task is delayed, never starved). Default 0.
    public var priority: Int
    /// Whether `priority` also orders the task against other users' tasks: set for tasks an admin
    /// submits; absent (false) for everyone else, whose tasks take turns with other users'.
    public var priorityAcrossUsers: Bool?
    /// Where the final result is POSTed when the task ends, and how that went (absent in records written
    /// before webhooks existed, and for tasks without a callback).
    public var callback: TaskCallback?
    /// The id of the API key that submitted the task (never its secret); absent for tasks submitted
    /// without a key (a session, or keys not required) and in records written before keys were recorded.
    public var apiKey: String?

    public init(id: String, kind: TaskKind, model: String, user: String, request: JSONValue, priority: Int = 0, createdAt: Date = Date()) {
        self.id = id
        self.priority = priority
        self.kind = kind
        self.model = model
        self.user = user
        self.request = request
        self.state = .queued
        self.createdAt = createdAt
        self.attempts = 0
    }
}

extension TaskRecord {
    /// The key of a stored generation request under which sdbox keeps what it adds to the result's `info`
    /// (the LoRAs the box lacks, as A1111's "Networks not found"); never sent to the worker.
    public static let infoAdditionsKey = "sdbox_info"

    /// What the worker is sent of the stored request: all of it but ``infoAdditionsKey``.
    public var workerRequest: JSONValue {
        var request = request
        if request[Self.infoAdditionsKey] != nil { request[Self.infoAdditionsKey] = nil }
        return request
    }
}

/// Short, URL-safe, random task identifiers such as `1HmyrbhBJD`.
public enum TaskID {
    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

    /// A new identifier: 12 base-62 characters (71 bits of randomness).
    ///
    /// The digits come from one 128-bit draw: two calls to the system's generator (each a `getrandom`
    /// system call) rather than one per character. Each digit is a remainder by 62 of what the draw still
    /// holds, at least 2^56, so its bias is under 2^-50.
    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        var draw = UInt128(generator.next() as UInt64) << 64 | UInt128(generator.next() as UInt64)
        var characters: [Character] = []
        characters.reserveCapacity(12)
        for _ in 0..<12 {
            characters.append(alphabet[Int(draw % 62)])
            draw /= 62
        }
        return String(characters)
    }

    /// Whether a string could be a task identifier (used to refuse junk before touching the store).
    public static func isWellFormed(_ id: String) -> Bool {
        // Bytes, not characters: looking up characters' Unicode properties took about 1% of a status read.
        (1...64).contains(id.utf8.count) && id.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "-"), UInt8(ascii: "_"): true
            default: false
            }
        }
    }
}

extension TaskRecord {
    /// Width × height × steps × images a generation asked for (A1111's defaults where unset): the work
    /// usage reports count; 0 for other kinds.
    public var pixelSteps: Int {
        guard kind == .txt2img || kind == .img2img else { return 0 }
        func number(_ key: String, _ fallback: Int) -> Int { request[key]?.integerValue.map { Int(clamping: $0) } ?? fallback }
        let (width, height, steps) = (number("width", 512), number("height", 512), number("steps", 20))
        let (perImage, overflow) = width.multipliedReportingOverflow(by: height)
        let (perStep, overflow2) = perImage.multipliedReportingOverflow(by: steps)
        let (product, overflow3) = perStep.multipliedReportingOverflow(by: expectedImages)
        return overflow || overflow2 || overflow3 ? Int.max : product
    }

    /// The images the task will make, as its request asks: `batch_size` × `n_iter` for a generation (1
    /// each where unset), one per input image for post-processing, none for a passthrough call. What an
    /// image quota counts for a task that has not finished.
    public var expectedImages: Int {
        func number(_ key: String) -> Int { max(1, request[key]?.integerValue.map { Int(clamping: $0) } ?? 1) }
        switch kind {
        case .txt2img, .img2img:
            let (images, overflow) = number("batch_size").multipliedReportingOverflow(by: number("n_iter"))
            return overflow ? Int.max : images
        case .extraSingleImage: return 1
        case .extraBatchImages: return request["imageList"]?.arrayValue?.count ?? 0
        case .passthrough: return 0
        }
    }

    /// The seconds a worker spent on it, from its start to its end; 0 when it never ran.
    public var workerSeconds: Double {
        guard let startedAt, let finishedAt else { return 0 }
        return max(0, finishedAt.timeIntervalSince(startedAt))
    }
}

import Foundation
import SDBoxCore

/// What finished tasks used, added up by user, API key, model or day (`GET /admin/usage`): tasks, images made,
/// pixels × steps (the generation work asked for), and the seconds a worker spent on them.
public struct UsageReport: Sendable, Equatable {
    /// How rows are keyed: by user, by the id of the API key that submitted the task (``noKey`` for
    /// tasks submitted without one), by model, or by UTC day.
    public enum Grouping: String, Sendable {
        case user, key, model, day
    }

    /// The row of tasks submitted without an API key (by a session, or with keys not required), grouped by key.
    public static let noKey = "(no key)"

    /// One group's figures.
    public struct Row: Codable, Sendable, Equatable {
        public var key: String
        public var tasks = 0
        public var images = 0
        public var pixelSteps = 0
        public var workerSeconds = 0.0

        mutating func add(_ task: TaskRecord) {
            tasks += 1
            images += task.result?.images.count ?? 0
            pixelSteps += task.pixelSteps
            workerSeconds += task.workerSeconds
        }
    }

    public let grouping: Grouping
    public private(set) var rows: [String: Row] = [:]
    public private(set) var totals = Row(key: "total")

    public init(grouping: Grouping) {
        self.grouping = grouping
    }

    /// Counts a task if it is final.
    public mutating func add(_ task: TaskRecord) {
        guard task.state.isFinal else { return }
        let key: String
        switch grouping {
        case .user: key = task.user
        case .key: key = task.apiKey ?? Self.noKey
        case .model: key = task.model
        case .day: key = Self.day(of: task.createdAt)
        }
        rows[key, default: Row(key: key)].add(task)
        totals.add(task)
    }

    /// The rows in key order.
    public var sortedRows: [Row] { rows.values.sorted { $0.key < $1.key } }

    /// The report as CSV: a header, one line per group, the total last.
    public var csv: String {
        var lines = ["\(grouping.rawValue),tasks,images,pixel_steps,worker_seconds"]
        for row in sortedRows + [totals] {
            lines.append([Self.csvField(row.key), "\(row.tasks)", "\(row.images)", "\(row.pixelSteps)", String(format: "%.3f", row.workerSeconds)].joined(separator: ","))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// A CSV field, quoted when it holds a comma, quote or line break (and a leading `=+-@` neutralised,
    /// so that a spreadsheet does not run it as a formula).
    static func csvField(_ text: String) -> String {
        var text = text
        if let first = text.first, "=+-@".contains(first) { text = "'" + text }
        guard text.contains(where: { ",\"\r\n".contains($0) }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// The UTC day of a time, `YYYY-MM-DD`.
    static func day(of date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .current
        let parts = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0)
    }
}

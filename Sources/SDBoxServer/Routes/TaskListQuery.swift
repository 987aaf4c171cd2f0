import Appliance
import Foundation
import Hummingbird
import SDBoxCore
import Storage

/// The filters of `GET /tasks`: `state` (one or more, comma-separated), `model` (a checkpoint's file name),
/// `since` (created at or after a time) and `before` (a page's `next`, or a time: created before it).
/// Times are ISO 8601 (`2025-01-31T12:00:00Z`, fractions allowed) or Unix seconds.
enum TaskListQuery {
    static func filter(_ query: Parameters) throws -> TaskFilter {
        var filter = TaskFilter()
        if let states = query.get("state"), !states.isEmpty {
            for name in states.split(separator: ",") {
                guard let state = TaskState(apiName: name.trimmingCharacters(in: .whitespaces)) else {
                    throw invalid("state", "one or more of \(TaskState.allCases.map(\.apiName).joined(separator: ", ")) (or queued), comma-separated")
                }
                filter.states.insert(state)
            }
        }
        if let model = query.get("model"), !model.isEmpty { filter.model = model }
        if let since = query.get("since"), !since.isEmpty {
            filter.since = try time(since, field: "since")
        }
        if let before = query.get("before"), !before.isEmpty {
            if isCursor(before) {
                filter.before = before
            } else {
                filter.before = TaskFilter.position(at: try time(before, field: "before"))
            }
        }
        return filter
    }

    /// Whether `text` is a page's `next`: a time-index key, 15 digits, `_` and a task id.
    static func isCursor(_ text: String) -> Bool {
        let parts = text.split(separator: "_", maxSplits: 1)
        return parts.count == 2 && parts[0].count == 15 && parts[0].allSatisfy(\.isASCII) && parts[0].allSatisfy(\.isNumber)
            && TaskID.isWellFormed(String(parts[1]))
    }

    static func time(_ text: String, field: String) throws -> Date {
        if let seconds = Double(text), seconds.isFinite, seconds >= 0 { return Date(timeIntervalSince1970: seconds) }
        if let date = try? Date(text, strategy: .iso8601) { return date }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        throw invalid(field, "an ISO 8601 time (e.g. 2025-01-31T12:00:00Z) or Unix seconds")
    }

    static func invalid(_ field: String, _ what: String) -> APIError {
        APIError(.badRequest, "invalid request", detail: "query parameter '\(field)' must be \(what)", extra: ["field": .string(field)])
    }
}

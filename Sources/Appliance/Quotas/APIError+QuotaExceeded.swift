import Foundation
import HTTPTypes
import SDBoxCore

extension APIError {
    /// The 429 of a submission over a quota: `limit` (which), `allowed` (its value), `used`, `left`,
    /// `resetsAt` (ISO 8601, UTC), `retryAfter` (seconds, also the `Retry-After` header), and whose quota
    /// it is (`quotaType` `user` or `key`, `quotaName`).
    init(_ exceeded: QuotaTally.Exceeded, task: TaskRecord) {
        let isImages = exceeded.limit.hasPrefix("images")
        func number(_ value: Double) -> JSONValue { isImages ? .integer(Int64(value)) : .number(value) }
        func text(_ value: Double) -> String { isImages ? "\(Int64(value))" : String(format: "%.1f", value) }
        let whose = exceeded.subject == .user(task.user) ? "user '\(task.user)'" : "this API key"
        let unit = isImages ? "images" : "worker seconds"
        let asked = isImages ? "; this request makes \(task.expectedImages)" : ""
        let retryAfter = max(1, Int64(exceeded.resetsAt.timeIntervalSince(task.createdAt).rounded(.up)))
        self.init(
            .tooManyRequests, "quota exceeded",
            detail: "\(whose) has used \(text(exceeded.used)) of \(text(exceeded.value)) \(unit) (\(exceeded.limit)); \(text(exceeded.left)) left\(asked); the quota resets at \(exceeded.resetsAt.ISO8601Format())",
            extra: [
                "quotaType": .string(exceeded.subject.type), "quotaName": .string(exceeded.subject.name), "limit": .string(exceeded.limit),
                "allowed": number(exceeded.value), "used": number(exceeded.used), "left": number(exceeded.left),
                "resetsAt": .string(exceeded.resetsAt.ISO8601Format()), "retryAfter": .integer(retryAfter),
            ]
        )
    }
}

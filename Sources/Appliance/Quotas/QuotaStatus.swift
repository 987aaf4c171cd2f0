import Foundation
import SDBoxCore

/// A quota as `GET /admin/quotas` lists it: whom it limits, its limits, and what its subject used in the
/// current UTC day and month (images made and to be made, worker seconds) with when each resets.
public struct QuotaStatus: Encodable, Sendable, Equatable {
    /// One period's use.
    public struct Use: Encodable, Sendable, Equatable {
        public var images: Int
        public var workerSeconds: Double
        public var resetsAt: String
    }

    public let subject: QuotaSubject
    public let quota: Quota
    public let day: Use
    public let month: Use

    init(subject: QuotaSubject, quota: Quota, tally: QuotaTally) {
        self.subject = subject
        self.quota = quota
        func use(_ period: QuotaPeriod) -> Use {
            let figures = tally.figures(of: subject, in: period)
            let end = period == .day ? tally.day.end : tally.month.end
            return Use(images: figures.imagesCounted, workerSeconds: figures.workerSeconds, resetsAt: end.ISO8601Format())
        }
        day = use(.day)
        month = use(.month)
    }

    enum CodingKeys: String, CodingKey {
        case type, name, quota, day, month
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(subject.type, forKey: .type)
        try container.encode(subject.name, forKey: .name)
        try container.encode(quota, forKey: .quota)
        try container.encode(day, forKey: .day)
        try container.encode(month, forKey: .month)
    }
}

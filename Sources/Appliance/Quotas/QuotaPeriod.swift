import Foundation

/// The spans quotas count over: the UTC day and the UTC calendar month; each resets at its end (the next
/// UTC midnight, the first of the next month at 00:00 UTC).
public enum QuotaPeriod: String, Sendable, CaseIterable {
    case day, month

    /// The span of this kind that holds `date`.
    public func interval(containing date: Date) -> DateInterval {
        let component: Calendar.Component = self == .day ? .day : .month
        // A Gregorian calendar in UTC always has the span; the fallback is never taken.
        return Self.utc.dateInterval(of: component, for: date) ?? DateInterval(start: date, duration: 0)
    }

    static let utc: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? TimeZone(secondsFromGMT: 0) ?? .current
        return calendar
    }()
}

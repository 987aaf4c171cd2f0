@testable import Appliance
import Foundation
import SDBoxCore
import Testing

/// The quotas' arithmetic: UTC days and months, what counts against a limit, and when it resets.
@Suite struct QuotaTallyTests {
    static func time(_ text: String) -> Date {
        (try? Date(text, strategy: .iso8601)) ?? Date.distantPast
    }

    /// A txt2img task of `user` (submitted with `key`) for `images` images, created at `created`.
    static func task(_ id: String, user: String = "ann", key: String? = nil, images: Int = 1, created: String) -> TaskRecord {
        var task = TaskRecord(id: id, kind: .txt2img, model: "m", user: user, request: ["batch_size": .integer(Int64(images))], createdAt: time(created))
        task.apiKey = key
        return task
    }

    /// The task finished with its images made in `seconds` of a worker.
    static func finished(_ task: TaskRecord, seconds: Double) -> TaskRecord {
        var task = task
        task.state = .succeeded
        task.startedAt = task.createdAt
        task.finishedAt = task.createdAt.addingTimeInterval(seconds)
        task.result = TaskResult(images: (1...task.expectedImages).map { "images/\(task.user)/\(task.id)_\($0).png" }, info: .null, parameters: .null)
        return task
    }

    @Test func periodsAreUTCDaysAndCalendarMonths() {
        let day = QuotaPeriod.day.interval(containing: Self.time("2024-02-29T23:59:59Z"))
        #expect(day.start == Self.time("2024-02-29T00:00:00Z") && day.end == Self.time("2024-03-01T00:00:00Z"))
        let month = QuotaPeriod.month.interval(containing: Self.time("2024-02-10T05:00:00Z"))
        #expect(month.start == Self.time("2024-02-01T00:00:00Z") && month.end == Self.time("2024-03-01T00:00:00Z"), "a leap February")
        let december = QuotaPeriod.month.interval(containing: Self.time("2023-12-31T23:59:59Z"))
        #expect(december.end == Self.time("2024-01-01T00:00:00Z"), "the year turns")
        #expect(QuotaPeriod.day.interval(containing: Self.time("2024-03-01T00:00:00Z")).start == Self.time("2024-03-01T00:00:00Z"), "midnight starts its day")
    }

    @Test func queuedImagesCountSoABurstCannotOvershootAndTheLimitResetsAtUTCMidnight() {
        var tally = QuotaTally(now: Self.time("2024-05-10T22:00:00Z"))
        let quotas: [QuotaSubject: Quota] = [.key("K1"): Quota(imagesPerDay: 3)]
        let first = Self.task("a", key: "K1", images: 2, created: "2024-05-10T22:00:00Z")
        #expect(tally.admit(first, quotas: quotas, now: first.createdAt) == nil)
        // The first task has not run: its 2 images count; 2 more would be 4.
        let second = Self.task("b", key: "K1", images: 2, created: "2024-05-10T22:00:01Z")
        let refused = tally.admit(second, quotas: quotas, now: second.createdAt)
        #expect(refused == QuotaTally.Exceeded(
            subject: .key("K1"), limit: "imagesPerDay", value: 3, used: 2, left: 1, resetsAt: Self.time("2024-05-11T00:00:00Z")
        ))
        // Another key of the same user, and the user, are not limited by K1's quota.
        #expect(tally.admit(Self.task("c", key: "K2", images: 5, created: "2024-05-10T22:00:02Z"), quotas: quotas, now: Self.time("2024-05-10T22:00:02Z")) == nil)
        let third = Self.task("d", key: "K1", images: 1, created: "2024-05-10T22:00:03Z")
        #expect(tally.admit(third, quotas: quotas, now: third.createdAt) == nil)
        #expect(tally.figures(of: .key("K1"), in: .day) == QuotaTally.Figures(images: 0, pendingImages: 3))
        #expect(tally.figures(of: .user("ann"), in: .day).pendingImages == 8)
        // The first ends having made its images in 1.5 s: made, no longer pending.
        tally.finish(Self.finished(first, seconds: 1.5), now: Self.time("2024-05-10T22:00:05Z"))
        #expect(tally.figures(of: .key("K1"), in: .day) == QuotaTally.Figures(images: 2, pendingImages: 1, workerSeconds: 1.5))
        let late = Self.task("e", key: "K1", created: "2024-05-10T23:59:59Z")
        #expect(tally.admit(late, quotas: quotas, now: late.createdAt)?.left == 0)
        // At 00:00 UTC the day's count starts again; the month keeps it.
        let next = Self.task("f", key: "K1", images: 3, created: "2024-05-11T00:00:00Z")
        #expect(tally.admit(next, quotas: quotas, now: next.createdAt) == nil)
        #expect(tally.figures(of: .key("K1"), in: .day) == QuotaTally.Figures(images: 0, pendingImages: 3))
        #expect(tally.figures(of: .key("K1"), in: .month) == QuotaTally.Figures(images: 2, pendingImages: 4, workerSeconds: 1.5))
        // A task of the day before that ends now counts in the month only.
        tally.finish(Self.finished(third, seconds: 1), now: Self.time("2024-05-11T00:00:01Z"))
        #expect(tally.figures(of: .key("K1"), in: .day).images == 0 && tally.figures(of: .key("K1"), in: .month).images == 3)
    }

    @Test func workerSecondsLimitAUserOnceUsedUpAndTheMonthResetsOnTheFirst() {
        var tally = QuotaTally(now: Self.time("2024-01-31T10:00:00Z"))
        let quotas: [QuotaSubject: Quota] = [.user("ann"): Quota(workerSecondsPerMonth: 10)]
        let long = Self.task("a", images: 1, created: "2024-01-31T10:00:00Z")
        #expect(tally.admit(long, quotas: quotas, now: long.createdAt) == nil)
        #expect(tally.admit(Self.task("b", created: "2024-01-31T10:00:01Z"), quotas: quotas, now: Self.time("2024-01-31T10:00:01Z")) == nil, "not used up yet")
        tally.finish(Self.finished(long, seconds: 12), now: Self.time("2024-01-31T10:00:12Z"))
        let refused = tally.admit(Self.task("c", key: "K", created: "2024-01-31T23:00:00Z"), quotas: quotas, now: Self.time("2024-01-31T23:00:00Z"))
        #expect(refused?.limit == "workerSecondsPerMonth" && refused?.subject == .user("ann") && refused?.used == 12 && refused?.left == 0)
        #expect(refused?.resetsAt == Self.time("2024-02-01T00:00:00Z"))
        #expect(tally.admit(Self.task("d", created: "2024-02-01T00:00:00Z"), quotas: quotas, now: Self.time("2024-02-01T00:00:00Z")) == nil, "a new month")
        #expect(tally.figures(of: .user("ann"), in: .month) == QuotaTally.Figures(pendingImages: 1))
    }

    @Test func theTallyBuiltAtStartCountsTheMonthsTasksAndAWithdrawnTaskNothing() {
        var tally = QuotaTally(now: Self.time("2024-07-15T12:00:00Z"))
        tally.add(Self.finished(Self.task("old", created: "2024-06-30T23:59:59Z"), seconds: 5))
        tally.add(Self.finished(Self.task("month", images: 2, created: "2024-07-02T08:00:00Z"), seconds: 2))
        tally.add(Self.finished(Self.task("today", created: "2024-07-15T01:00:00Z"), seconds: 1))
        tally.add(Self.task("queued", images: 4, created: "2024-07-15T11:00:00Z"))
        #expect(tally.figures(of: .user("ann"), in: .month) == QuotaTally.Figures(images: 3, pendingImages: 4, workerSeconds: 3))
        #expect(tally.figures(of: .user("ann"), in: .day) == QuotaTally.Figures(images: 1, pendingImages: 4, workerSeconds: 1))
        let admitted = Self.task("new", images: 2, created: "2024-07-15T12:00:00Z")
        #expect(tally.admit(admitted, quotas: [:], now: admitted.createdAt) == nil)
        tally.withdraw(admitted)
        #expect(tally.figures(of: .user("ann"), in: .day).pendingImages == 4)
    }

    @Test func aQuotaIsParsedWithClearErrors() throws {
        #expect(try Quota(parsing: ["imagesPerDay": 5, "workerSecondsPerMonth": 90.5, "imagesPerMonth": .null]) == Quota(imagesPerDay: 5, workerSecondsPerMonth: 90.5))
        #expect(throws: RequestValidationError(field: "imagesPerDay", message: "field 'imagesPerDay' must be a whole number from 0 to 1000000000, or null for no limit")) {
            try Quota(parsing: ["imagesPerDay": 1.5])
        }
        #expect(throws: RequestValidationError.self) { try Quota(parsing: ["workerSecondsPerDay": -1]) }
        #expect(throws: RequestValidationError.self) { try Quota(parsing: ["imagesPerWeek": 3]) }
        #expect(throws: RequestValidationError.self) { try Quota(parsing: [:]) }
        // Stored compactly: absent limits are not written.
        #expect(String(decoding: try JSONEncoder().encode(Quota(imagesPerDay: 5)), as: UTF8.self) == #"{"imagesPerDay":5}"#)
    }
}

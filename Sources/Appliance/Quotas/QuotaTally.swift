import Foundation
import SDBoxCore

/// What each user and API key used in the current UTC day and month, for the quotas: images made and
/// worker seconds spent by its finished tasks, and the images its queued and running tasks will make
/// (``SDBoxCore/TaskRecord/expectedImages``), so that a burst of submissions cannot overshoot an image
/// quota. A task counts in the day and month it was created in, as `GET /admin/usage` counts it.
///
/// Kept in memory and updated as tasks are admitted and end (each step a few dictionary updates); built
/// at start from the tasks of the current month. When the day or month ends, its figures are dropped.
public struct QuotaTally: Sendable {
    /// One subject's figures over one period.
    public struct Figures: Sendable, Equatable {
        /// Images its finished tasks made.
        public var images = 0
        /// Images its queued and running tasks will make.
        public var pendingImages = 0
        /// Seconds its finished tasks took of a worker.
        public var workerSeconds = 0.0

        public init(images: Int = 0, pendingImages: Int = 0, workerSeconds: Double = 0) {
            self.images = images
            self.pendingImages = pendingImages
            self.workerSeconds = workerSeconds
        }

        /// The images counted against an image quota: made and to be made.
        public var imagesCounted: Int { images + pendingImages }
    }

    /// A limit a submission would go over: which, its value, what is used, what is left, and when it resets.
    public struct Exceeded: Sendable, Equatable {
        public var subject: QuotaSubject
        /// `imagesPerDay`, `imagesPerMonth`, `workerSecondsPerDay` or `workerSecondsPerMonth`.
        public var limit: String
        public var value: Double
        public var used: Double
        public var left: Double
        public var resetsAt: Date
    }

    public private(set) var day: DateInterval
    public private(set) var month: DateInterval
    private var days: [QuotaSubject: Figures] = [:]
    private var months: [QuotaSubject: Figures] = [:]

    public init(now: Date) {
        day = QuotaPeriod.day.interval(containing: now)
        month = QuotaPeriod.month.interval(containing: now)
    }

    /// Moves to the day and month that hold `now`, dropping the figures of those that ended.
    public mutating func advance(to now: Date) {
        guard now >= day.end else { return }
        day = QuotaPeriod.day.interval(containing: now)
        days = [:]
        guard now >= month.end else { return }
        month = QuotaPeriod.month.interval(containing: now)
        months = [:]
    }

    /// `subject`'s figures in the current `period`.
    public func figures(of subject: QuotaSubject, in period: QuotaPeriod) -> Figures {
        (period == .day ? days[subject] : months[subject]) ?? Figures()
    }

    /// Counts a task as it stands: what it used if it is final, else the images it will make. For the
    /// tally built at start.
    public mutating func add(_ task: TaskRecord) {
        change(for: task) { figures in
            if task.state.isFinal {
                figures.images += task.result?.images.count ?? 0
                figures.workerSeconds += task.workerSeconds
            } else {
                figures.pendingImages += task.expectedImages
            }
        }
    }

    /// Checks a new task against `quotas` (each subject's, as ``QuotaSubject/of(_:)`` names them) and, if
    /// no limit is exceeded, counts the images it will make; else counts nothing and answers the first
    /// limit exceeded. An image limit is exceeded when the task's images would take the count past it, a
    /// worker-seconds limit when it is used up.
    public mutating func admit(_ task: TaskRecord, quotas: [QuotaSubject: Quota], now: Date) -> Exceeded? {
        advance(to: now)
        for subject in QuotaSubject.of(task) {
            guard let quota = quotas[subject] else { continue }
            for period in QuotaPeriod.allCases {
                let interval = period == .day ? day : month
                let used = figures(of: subject, in: period)
                let (images, seconds) = period == .day
                    ? (quota.imagesPerDay, quota.workerSecondsPerDay) : (quota.imagesPerMonth, quota.workerSecondsPerMonth)
                let name = period.rawValue.prefix(1).uppercased() + period.rawValue.dropFirst()
                if let images, used.imagesCounted + task.expectedImages > images {
                    return Exceeded(
                        subject: subject, limit: "imagesPer\(name)", value: Double(images), used: Double(used.imagesCounted),
                        left: Double(max(0, images - used.imagesCounted)), resetsAt: interval.end
                    )
                }
                if let seconds, used.workerSeconds >= seconds {
                    return Exceeded(
                        subject: subject, limit: "workerSecondsPer\(name)", value: seconds, used: used.workerSeconds,
                        left: max(0, seconds - used.workerSeconds), resetsAt: interval.end
                    )
                }
            }
        }
        change(for: task) { $0.pendingImages += task.expectedImages }
        return nil
    }

    /// Takes back a task that was admitted but not stored.
    public mutating func withdraw(_ task: TaskRecord) {
        change(for: task) { $0.pendingImages = max(0, $0.pendingImages - task.expectedImages) }
    }

    /// Counts a task that reached its final state: the images it was to make no longer, what it used instead.
    public mutating func finish(_ task: TaskRecord, now: Date) {
        advance(to: now)
        change(for: task) { figures in
            figures.pendingImages = max(0, figures.pendingImages - task.expectedImages)
            figures.images += task.result?.images.count ?? 0
            figures.workerSeconds += task.workerSeconds
        }
    }

    /// Applies `change` to the figures of the task's subjects in the current day and month, where it was
    /// created in them.
    private mutating func change(for task: TaskRecord, _ change: (inout Figures) -> Void) {
        let inDay = day.start <= task.createdAt && task.createdAt < day.end
        let inMonth = month.start <= task.createdAt && task.createdAt < month.end
        guard inMonth else { return }
        for subject in QuotaSubject.of(task) {
            change(&months[subject, default: Figures()])
            if inDay { change(&days[subject, default: Figures()]) }
        }
    }
}

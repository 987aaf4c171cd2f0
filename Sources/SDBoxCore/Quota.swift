/// What a user or an API key may use (`PUT /admin/quotas/...`): images and worker seconds per UTC day and
/// per UTC calendar month. An absent limit is no limit. Kept compact: absent limits are not written.
public struct Quota: Codable, Sendable, Equatable {
    public var imagesPerDay: Int?
    public var imagesPerMonth: Int?
    public var workerSecondsPerDay: Double?
    public var workerSecondsPerMonth: Double?

    public init(imagesPerDay: Int? = nil, imagesPerMonth: Int? = nil, workerSecondsPerDay: Double? = nil, workerSecondsPerMonth: Double? = nil) {
        self.imagesPerDay = imagesPerDay
        self.imagesPerMonth = imagesPerMonth
        self.workerSecondsPerDay = workerSecondsPerDay
        self.workerSecondsPerMonth = workerSecondsPerMonth
    }

    /// Whether no limit is set.
    public var isUnlimited: Bool {
        imagesPerDay == nil && imagesPerMonth == nil && workerSecondsPerDay == nil && workerSecondsPerMonth == nil
    }

    /// The largest limit a quota takes (images or seconds).
    public static let maxLimit = 1_000_000_000

    /// The quota a JSON object sets (`PUT /admin/quotas/...`): each limit a number of 0 or more, or null
    /// for none; at least one limit; no other field.
    public init(parsing body: [String: JSONValue]) throws(RequestValidationError) {
        let names = ["imagesPerDay", "imagesPerMonth", "workerSecondsPerDay", "workerSecondsPerMonth"]
        if let unknown = body.keys.sorted().first(where: { !names.contains($0) }) {
            throw RequestValidationError(field: unknown, message: "unknown field '\(unknown)'; a quota has \(names.joined(separator: ", "))")
        }
        func limit(_ name: String, integer: Bool) throws(RequestValidationError) -> Double? {
            guard let value = body[name], !value.isNull else { return nil }
            guard let number = value.doubleValue, number >= 0, number <= Double(Self.maxLimit), !integer || number == number.rounded() else {
                let kind = integer ? "a whole number" : "a number"
                throw RequestValidationError(field: name, message: "field '\(name)' must be \(kind) from 0 to \(Self.maxLimit), or null for no limit")
            }
            return number
        }
        self.init(
            imagesPerDay: try limit("imagesPerDay", integer: true).map { Int($0) },
            imagesPerMonth: try limit("imagesPerMonth", integer: true).map { Int($0) },
            workerSecondsPerDay: try limit("workerSecondsPerDay", integer: false),
            workerSecondsPerMonth: try limit("workerSecondsPerMonth", integer: false)
        )
        guard !isUnlimited else {
            throw RequestValidationError(field: nil, message: "a quota sets at least one of \(names.joined(separator: ", ")); DELETE removes it")
        }
    }
}

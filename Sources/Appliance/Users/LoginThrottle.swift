import Foundation
import HTTPTypes
import SDBoxCore
import Synchronization

/// Slows password guessing at `POST /login`: per user name and client address, the first
/// ``freeFailures`` wrong passwords cost nothing more, then each next try must wait twice as long as the
/// last (1 s, 2 s, 4 s, … up to ``longestWait``) after the latest failure, answered 429 with `retryAfter`
/// before any password is checked. A success clears the count. Keyed by address too, so that a stranger's
/// guesses cannot lock a user out from their own machine.
package final class LoginThrottle: Sendable {
    static let freeFailures = 5
    static let longestWait: TimeInterval = 300
    /// Counts older than this are forgotten.
    static let memory: TimeInterval = 3600

    private struct Failures {
        var count: Int
        var last: Date
    }

    private let failures = Mutex<[String: Failures]>([:])

    package init() {}

    static func key(name: String, address: String?) -> String {
        name.lowercased() + "|" + (address ?? "")
    }

    /// 429 when `name` from `address` must wait before trying again.
    package func check(name: String, address: String?, now: Date = Date()) throws {
        let key = Self.key(name: name, address: address)
        let wait: TimeInterval? = failures.withLock { failures in
            guard let entry = failures[key], entry.count >= Self.freeFailures else { return nil }
            let due = entry.last.addingTimeInterval(Self.wait(afterFailures: entry.count))
            return due > now ? due.timeIntervalSince(now) : nil
        }
        if let wait {
            let seconds = Int(wait.rounded(.up))
            throw APIError(
                .tooManyRequests, "too many failed logins", detail: "login fail too often for '\(name)'; retry in \(seconds) s",
                extra: ["retryAfter": .integer(Int64(seconds))]
            )
        }
    }

    /// The wait before the next try after `count` failures in a row.
    static func wait(afterFailures count: Int) -> TimeInterval {
        min(longestWait, pow(2, Double(count - freeFailures)))
    }

    package func failed(name: String, address: String?, now: Date = Date()) {
        let key = Self.key(name: name, address: address)
        failures.withLock { failures in
            if failures.count > 10_000 { failures = failures.filter { now.timeIntervalSince($0.value.last) < Self.memory } }
            var entry = failures[key].flatMap { now.timeIntervalSince($0.last) < Self.memory ? $0 : nil } ?? Failures(count: 0, last: now)
            entry.count += 1
            entry.last = now
            failures[key] = entry
        }
    }

    package func succeeded(name: String, address: String?) {
        _ = failures.withLock { $0.removeValue(forKey: Self.key(name: name, address: address)) }
    }
}

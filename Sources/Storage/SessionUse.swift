import Foundation
import SDBoxCore

/// What one use of a session does, the same in every ``UserStore``.
///
/// A session's last use is written at most once a minute, or four times a lifetime when that is shorter
/// (a request with a token then costs a read, not a write); expiry is judged on that time, so a session
/// may outlive its last use by up to a quarter of its lifetime more.
enum SessionUse {
    /// Unused for longer than its lifetime: the store removes it.
    case expired
    /// Used lately enough: nothing is written.
    case current(SessionRecord)
    /// Its stored last use is stale: the store writes this one, unless the session went meanwhile.
    case renewed(SessionRecord)

    /// How stale a session's stored last use may be before a use writes it again.
    static let touchInterval: TimeInterval = 60

    init(of session: SessionRecord, now: Date, lifetime: TimeInterval) {
        let age = now.timeIntervalSince(session.lastUsed)
        if age > lifetime {
            self = .expired
        } else if age < min(Self.touchInterval, lifetime / 4) {
            self = .current(session)
        } else {
            var used = session
            used.lastUsed = now
            self = .renewed(used)
        }
    }
}

/// The user names a ``UserStore`` can hold: 1 to 511 bytes (LMDB's largest key), in every store alike;
/// no user has another.
enum UserNames {
    static func isStorable(_ name: String) -> Bool {
        (1...511).contains(name.utf8.count)
    }
}

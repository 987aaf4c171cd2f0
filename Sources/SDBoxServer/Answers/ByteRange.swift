import Appliance
import Foundation

/// What a `Range` header asks of an object of a known size (RFC 9110 §14.2), for one range of bytes.
enum ByteRange: Equatable {
    /// No range was asked, or one the server ignores (a unit other than bytes, several ranges).
    case whole
    /// The bytes at these offsets, within the object.
    case part(ClosedRange<Int>)
    /// A malformed range, or one that starts past the end: answered with 416.
    case unsatisfiable

    init(header: String?, size: Int) {
        guard let header = header?.trimmingCharacters(in: .whitespaces), header.hasPrefix("bytes=") else {
            self = .whole
            return
        }
        let spec = header.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        guard !spec.contains(",") else {
            self = .whole
            return
        }
        guard let dash = spec.firstIndex(of: "-") else {
            self = .unsatisfiable
            return
        }
        let first = spec[..<dash].trimmingCharacters(in: .whitespaces)
        let last = spec[spec.index(after: dash)...].trimmingCharacters(in: .whitespaces)
        // An offset too large for Int is still a number: past any object's end (as nginx reads it), so
        // a last offset is clamped to the end and a first one is unsatisfiable.
        func offset(_ text: String) -> Int? {
            guard !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            return Int(text) ?? Int.max
        }
        switch (offset(first), offset(last)) {
        case (let start?, let end?) where start <= end && start < size:
            self = .part(start...min(end, size - 1))
        case (let start?, nil) where last.isEmpty && start < size:
            self = .part(start...(size - 1))
        case (nil, let length?) where first.isEmpty && length > 0 && size > 0:
            self = .part(max(0, size - length)...(size - 1))
        default:
            self = .unsatisfiable
        }
    }
}

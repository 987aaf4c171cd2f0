/// A short, bounded description of any error, for answers and logs: an error's own description can
/// quote whole values (a decoding error's coding path through a deeply nested body, a record dumped as
/// Swift text), which must reach neither a client nor the log.
public struct ErrorSummary: CustomStringConvertible, Sendable {
    /// The longest summary, in characters.
    public static let maxLength = 300
    public let description: String

    public init(_ error: any Error) {
        let text: String
        switch error {
        case let error as DecodingError:
            text = "the data could not be decoded: " + Self.context(of: error)
        case let error as EncodingError:
            if case .invalidValue(_, let context) = error {
                text = "the value could not be encoded: " + context.debugDescription
            } else {
                text = "the value could not be encoded"
            }
        default:
            text = String(describing: error)
        }
        description = text.count > Self.maxLength ? String(text.prefix(Self.maxLength)) + "…" : text
    }

    static func context(of error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let context), .keyNotFound(_, let context), .typeMismatch(_, let context), .valueNotFound(_, let context):
            context.debugDescription
        @unknown default:
            "unknown decoding error"
        }
    }
}

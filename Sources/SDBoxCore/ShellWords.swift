/// Splits a command line into words as a POSIX shell would, without expanding anything: whitespace
/// separates words; single quotes keep everything literally; double quotes keep everything but `\"`,
/// `\\`, `` \` `` and `\$`, whose backslash they drop; outside quotes a backslash keeps the next character.
/// For settings written as one string, such as the original's `extraArgs: "--api --nowebui"`.
public enum ShellWords {
    /// Why a line cannot be split.
    public struct Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    public static func split(_ line: String) throws(Error) -> [String] {
        var words: [String] = []
        var word = ""
        var inWord = false
        var characters = line.makeIterator()
        while let character = characters.next() {
            switch character {
            case " ", "\t", "\n", "\r":
                if inWord { words.append(word) }
                word = ""
                inWord = false
            case "'":
                inWord = true
                var closed = false
                while let next = characters.next() {
                    if next == "'" { closed = true; break }
                    word.append(next)
                }
                guard closed else { throw Error(description: "a single quote is not closed") }
            case "\"":
                inWord = true
                var closed = false
                while let next = characters.next() {
                    if next == "\"" { closed = true; break }
                    if next == "\\" {
                        guard let escaped = characters.next() else { break }
                        if !"\"\\`$".contains(escaped) { word.append("\\") }
                        word.append(escaped)
                    } else {
                        word.append(next)
                    }
                }
                guard closed else { throw Error(description: "a double quote is not closed") }
            case "\\":
                inWord = true
                guard let escaped = characters.next() else { throw Error(description: "the line ends with a backslash") }
                word.append(escaped)
            default:
                inWord = true
                word.append(character)
            }
        }
        if inWord { words.append(word) }
        return words
    }
}

import Foundation

/// A1111's infotext: the text it stores in a PNG's `parameters` chunk, e.g.
///
/// ```
/// a red fox
/// Negative prompt: blurry
/// Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model: demo
/// ```
///
/// Read in one pass over the text, whatever it holds: infotexts come from clients' PNGs, so a reading that
/// backtracks (as a regular expression does on a long line without a colon) would let one request stall
/// the server.
public enum Infotext {
    /// The longest infotext read, in UTF-8 bytes: PIL, which A1111 reads PNGs with, refuses a text chunk
    /// over 1 MiB too.
    public static let maxBytes = 1 << 20

    /// The fields of an infotext as A1111's `parse_generation_parameters` gives them (what
    /// `/sdapi/v1/png-info` answers in `parameters`): `Prompt`, `Negative prompt`, each `Key: value` of the
    /// last line as strings (quoted values unquoted), and `Size-1`/`Size-2` from `Size: WxH`.
    public static func parse(_ text: String) -> [String: JSONValue] {
        var lines = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n", omittingEmptySubsequences: false)
        var fields: [String: JSONValue] = [:]
        if let last = lines.last {
            let pairs = parameters(in: last)
            if pairs.count >= 3 {
                lines.removeLast()
                for (key, quotedValue) in pairs {
                    let key = key.trimmingCharacters(in: .whitespaces)
                    var value = quotedValue.trimmingCharacters(in: .whitespaces)
                    if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2,
                        let unquoted = try? JSONValue(parsing: Data(value.utf8)).stringValue
                    {
                        value = unquoted
                    }
                    if key == "Size", let size = Self.size(value) {
                        fields["Size-1"] = .string(size.width)
                        fields["Size-2"] = .string(size.height)
                    } else {
                        fields[key] = .string(value)
                    }
                }
            }
        }
        var prompt: [Substring] = []
        var negative: [Substring] = []
        var inNegative = false
        for line in lines {
            if line.hasPrefix("Negative prompt:") {
                inNegative = true
                negative.append(Substring(line.dropFirst("Negative prompt:".count).trimmingCharacters(in: .whitespaces)))
            } else if inNegative {
                negative.append(line)
            } else {
                prompt.append(line)
            }
        }
        fields["Prompt"] = .string(prompt.joined(separator: "\n"))
        fields["Negative prompt"] = .string(negative.joined(separator: "\n"))
        return fields
    }

    /// The `Key: value` pairs of one line, as Python's `re.findall` gives them for A1111's `re_param`,
    /// `\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)`, found in time linear in the line.
    ///
    /// A key is a word character then at least one more of word characters, spaces, `-` and `/`, then a
    /// colon; a start that fails can only fail again until the key's run ends, so the search goes on from
    /// there. A value is a quoted string followed by a comma or the end (its closing quote found in a table
    /// made once from the right), else everything up to the next comma.
    static func parameters(in line: Substring) -> [(key: String, value: String)] {
        let scalars = Array(line.unicodeScalars)
        let count = scalars.count
        // closingQuote[i]: the first quote at or after i that ends a quoted value whose content starts at
        // i (`\x` pairs are skipped); -1 for none.
        var closingQuote = [Int](repeating: -1, count: count + 2)
        for index in stride(from: count - 1, through: 0, by: -1) {
            switch scalars[index] {
            case "\"": closingQuote[index] = index
            case "\\": closingQuote[index] = index + 1 < count ? closingQuote[index + 2] : -1
            default: closingQuote[index] = closingQuote[index + 1]
            }
        }
        func text(_ range: Range<Int>) -> String {
            var out = String.UnicodeScalarView()
            out.append(contentsOf: scalars[range])
            return String(out)
        }
        var pairs: [(key: String, value: String)] = []
        var position = 0
        while position < count {
            var keyStart = position
            while keyStart < count, scalars[keyStart].properties.isWhitespace { keyStart += 1 }
            guard keyStart < count, isWord(scalars[keyStart]) else {
                position = keyStart + 1
                continue
            }
            var keyEnd = keyStart + 1
            while keyEnd < count, isWord(scalars[keyEnd]) || " -/".unicodeScalars.contains(scalars[keyEnd]) { keyEnd += 1 }
            guard keyEnd - keyStart >= 2, keyEnd < count, scalars[keyEnd] == ":" else {
                position = keyEnd
                continue
            }
            var valueStart = keyEnd + 1
            while valueStart < count, scalars[valueStart].properties.isWhitespace { valueStart += 1 }
            if valueStart + 1 < count, scalars[valueStart] == "\"" {
                let close = closingQuote[valueStart + 1]
                if close > valueStart + 1, close + 1 == count || scalars[close + 1] == "," {
                    pairs.append((text(keyStart..<keyEnd), text(valueStart..<(close + 1))))
                    position = close + 2
                    continue
                }
            }
            var valueEnd = valueStart
            while valueEnd < count, scalars[valueEnd] != "," { valueEnd += 1 }
            pairs.append((text(keyStart..<keyEnd), text(valueStart..<valueEnd)))
            position = valueEnd + 1
        }
        return pairs
    }

    /// Python's `\w`: a letter, digit or underscore, in any script.
    static func isWord(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "_" || scalar.properties.isAlphabetic || scalar.properties.numericType != nil
    }

    /// `512x768` as its two numbers.
    static func size(_ value: String) -> (width: String, height: String)? {
        let parts = value.split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }) else { return nil }
        return (String(parts[0]), String(parts[1]))
    }
}

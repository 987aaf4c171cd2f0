import Foundation

/// A1111's infotext: the text it stores in a PNG's `parameters` chunk, e.g.
///
/// ```
/// a red fox
/// Negative prompt: blurry
/// Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model: demo
/// ```
public enum Infotext {
    /// The fields of an infotext as A1111's `parse_generation_parameters` gives them (what
    /// `/sdapi/v1/png-info` answers in `parameters`): `Prompt`, `Negative prompt`, each `Key: value` of the
    /// last line as strings (quoted values unquoted), and `Size-1`/`Size-2` from `Size: WxH`.
    public static func parse(_ text: String) -> [String: JSONValue] {
        var lines = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var fields: [String: JSONValue] = [:]
        let parameter = Self.parameter
        if let last = lines.last, last.matches(of: parameter).count >= 3 {
            lines.removeLast()
            for match in last.matches(of: parameter) {
                let key = String(match.output.1).trimmingCharacters(in: .whitespaces)
                var value = String(match.output.2).trimmingCharacters(in: .whitespaces)
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2,
                    let unquoted = try? JSONValue(parsing: Data(value.utf8)).stringValue
                {
                    value = unquoted
                }
                if key == "Size", let size = value.wholeMatch(of: /(\d+)x(\d+)/) {
                    fields["Size-1"] = .string(String(size.output.1))
                    fields["Size-2"] = .string(String(size.output.2))
                } else {
                    fields[key] = .string(value)
                }
            }
        }
        var prompt: [String] = []
        var negative: [String] = []
        var inNegative = false
        for line in lines {
            if line.hasPrefix("Negative prompt:") {
                inNegative = true
                negative.append(String(line.dropFirst("Negative prompt:".count)).trimmingCharacters(in: .whitespaces))
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

    /// A1111's `re_param`: `Key: value` pairs, values quoted when they hold commas.
    static var parameter: Regex<(Substring, Substring, Substring)> { /\s*(\w[\w \-\/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/ }
}

/// The `<lora:name:weight>` tags of an A1111 prompt.
public enum LoraTags {
    /// The names the tags of `prompt` give, in order, as A1111's `<lora:([^:>]+)(?::[^>]*)?>` finds them,
    /// in one pass: a prompt is a client's text, and a search that backtracks (`<lora:a:` repeated, with
    /// no `>`) would let one request stall the server.
    public static func names(in prompt: String) -> [String] {
        let bytes = Array(prompt.utf8)
        let opening = Array("<lora:".utf8)
        let close = UInt8(ascii: ">"), colon = UInt8(ascii: ":")
        var names: [String] = []
        var position = 0
        search: while position + opening.count <= bytes.count {
            guard bytes[position..<(position + opening.count)].elementsEqual(opening) else {
                position += 1
                continue
            }
            let nameStart = position + opening.count
            var nameEnd = nameStart
            while nameEnd < bytes.count, bytes[nameEnd] != colon, bytes[nameEnd] != close { nameEnd += 1 }
            // Every tag ends with a `>`: with none left, no later tag can match either.
            guard nameEnd < bytes.count else { break search }
            guard nameEnd > nameStart else {
                position += 1
                continue
            }
            var end = nameEnd
            if bytes[nameEnd] == colon {
                while end < bytes.count, bytes[end] != close { end += 1 }
                guard end < bytes.count else { break search }
            }
            names.append(String(decoding: bytes[nameStart..<nameEnd], as: UTF8.self))
            position = end + 1
        }
        return names
    }
}

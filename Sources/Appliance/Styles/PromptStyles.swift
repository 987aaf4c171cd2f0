import Foundation
import HTTPTypes
import NIOPosix
import ObjectStore
import SDBoxCore

/// The box's prompt styles, in A1111's own file format (`styles.csv`: a header `name,prompt,negative_prompt`
/// and one quoted CSV row per style), kept at `<data dir>/styles.csv`: what `GET /sdapi/v1/prompt-styles`
/// lists and the admin pages edit. A1111 workers apply them to a request's `styles` when their launch
/// profile passes `--styles-file {data_dir}/styles.csv`. Written whole, atomically
/// (``ObjectStore/writeAtomically(_:to:key:)``).
package struct PromptStyles: Sendable {
    let path: String
    let threadPool: NIOThreadPool

    package init(path: String, threadPool: NIOThreadPool = .singleton) {
        self.path = path
        self.threadPool = threadPool
    }

    /// The styles in the file, in its order; none when there is no file.
    package func load() async throws -> [A1111.PromptStyle] {
        let path = self.path
        let text: String? = try await threadPool.runIfActive {
            guard let data = FileManager.default.contents(atPath: path) else { return nil }
            return String(decoding: data, as: UTF8.self)
        }
        guard let text else { return [] }
        var rows = Self.rows(of: text)
        guard let header = rows.first else { return [] }
        rows.removeFirst()
        let columns = header.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        func column(_ name: String, of row: [String]) -> String? {
            guard let index = columns.firstIndex(of: name), index < row.count, !row[index].isEmpty else { return nil }
            return row[index]
        }
        return rows.compactMap { row in
            guard let name = column("name", of: row) else { return nil }
            return A1111.PromptStyle(name: name, prompt: column("prompt", of: row), negative_prompt: column("negative_prompt", of: row))
        }
    }

    /// Replaces the file with `styles`; 400 for a style without a name or two of one name.
    package func save(_ styles: [A1111.PromptStyle]) async throws {
        var seen: Set<String> = []
        for style in styles {
            guard !style.name.trimmingCharacters(in: .whitespaces).isEmpty, seen.insert(style.name).inserted else {
                throw APIError(.badRequest, "invalid styles", detail: "every style needs a name of its own ('\(style.name)')", extra: ["field": "name"])
            }
        }
        var text = "name,prompt,negative_prompt\n"
        for style in styles {
            text += [style.name, style.prompt ?? "", style.negative_prompt ?? ""].map(Self.quoted).joined(separator: ",") + "\n"
        }
        let path = self.path
        let data = Data(text.utf8)
        try await threadPool.runIfActive { try ObjectStore.writeAtomically(data, to: path, key: "styles.csv") }
    }

    /// A CSV field, quoted (quotes doubled) as Python's csv module writes A1111's file.
    static func quoted(_ field: String) -> String {
        "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// The rows of CSV text: fields separated by commas, quoted fields may hold commas, quotes (doubled)
    /// and line breaks.
    static func rows(of text: String) -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field = ""
        var quoted = false
        var characters = Array(text).makeIterator()
        var pending: Character? = nil
        while let character = pending ?? characters.next() {
            pending = nil
            if quoted {
                if character == "\"" {
                    let next = characters.next()
                    if next == "\"" { field.append("\"") } else { quoted = false; pending = next }
                } else {
                    field.append(character)
                }
                continue
            }
            switch character {
            case "\"": quoted = true
            case ",":
                row.append(field)
                field = ""
            case "\n", "\r\n", "\r":
                row.append(field)
                if row != [""] { rows.append(row) }
                row = []
                field = ""
            default: field.append(character)
            }
        }
        if !field.isEmpty || !row.isEmpty {
            row.append(field)
            rows.append(row)
        }
        return rows
    }
}

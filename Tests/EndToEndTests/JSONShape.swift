import SDBoxCore

/// The shape of a JSON answer, as an API's schema states it: what contract tests check answers against
/// (key names, JSON types, which keys must be there and which may be null).
indirect enum JSONShape: Sendable {
    case string, number, integer, boolean
    /// Any JSON object.
    case object
    /// Any value at all.
    case any
    case array(JSONShape)
    /// An object whose every value has one shape (a dictionary).
    case map(JSONShape)
    /// An object with these keys.
    case record([String: Key])

    /// A key of a record: whether it must be there and whether it may be `null`.
    struct Key: Sendable {
        let shape: JSONShape
        let required: Bool
        let nullable: Bool

        /// Always there, never null (a pydantic field without a default, an OpenAPI `required` key).
        static func required(_ shape: JSONShape) -> Key { Key(shape: shape, required: true, nullable: false) }
        /// Always there, maybe null (pydantic's `Optional[...]`, which it writes as null).
        static func nullable(_ shape: JSONShape) -> Key { Key(shape: shape, required: true, nullable: true) }
        /// Maybe absent; of its shape when there (an OpenAPI property not in `required`).
        static func optional(_ shape: JSONShape) -> Key { Key(shape: shape, required: false, nullable: false) }
    }

    /// What in `value` does not fit this shape, one line per problem, each with its path; empty if it fits.
    func problems(in value: JSONValue, at path: String = "$") -> [String] {
        switch (self, value) {
        case (.any, _): return []
        case (.string, .string), (.boolean, .bool), (.integer, .integer), (.number, .integer), (.number, .number), (.object, .object): return []
        case (.array(let element), .array(let items)):
            return items.enumerated().flatMap { element.problems(in: $1, at: "\(path)[\($0)]") }
        case (.map(let element), .object(let members)):
            return members.flatMap { element.problems(in: $1, at: "\(path).\($0)") }
        case (.record(let keys), .object(let members)):
            var found: [String] = []
            for (name, key) in keys.sorted(by: { $0.key < $1.key }) {
                guard let member = members[name] else {
                    if key.required { found.append("\(path).\(name) is missing") }
                    continue
                }
                if member.isNull {
                    if !key.nullable { found.append("\(path).\(name) is null") }
                    continue
                }
                found += key.shape.problems(in: member, at: "\(path).\(name)")
            }
            return found
        default:
            return ["\(path) is \(value), not \(self)"]
        }
    }
}

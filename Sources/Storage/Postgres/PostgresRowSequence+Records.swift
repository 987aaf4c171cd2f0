import PostgresNIO

extension PostgresRowSequence {
    /// The records of a query whose one column is a record's JSON text (`record::text`), decoded.
    func records<T: Decodable>(_ type: T.Type) async throws -> [T] {
        var records: [T] = []
        for try await text in decode(String.self) {
            records.append(try RecordCoding.decode(T.self, from: text))
        }
        return records
    }

    /// The first record of such a query, if it found one.
    func record<T: Decodable>(_ type: T.Type) async throws -> T? {
        for try await text in decode(String.self) {
            return try RecordCoding.decode(T.self, from: text)
        }
        return nil
    }
}

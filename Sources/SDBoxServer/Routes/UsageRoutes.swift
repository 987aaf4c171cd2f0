import Appliance
import Foundation
import HTTPTypes
import Hummingbird
import SDBoxCore
import Storage

/// Usage for admins: `GET /admin/usage?from=&to=&user=&key=&groupBy=user|key|model|day`, what finished
/// tasks created in the period used (those of one user, those submitted with one API key), as JSON, or as
/// CSV with `Accept: text/csv`.
struct UsageRoutes {
    let tasks: any TaskStore

    func register(on router: Router<SDBoxRequestContext>) {
        router.get("/admin/usage") { request, _ in
            let query = request.uri.queryParameters
            var grouping = UsageReport.Grouping.user
            if let text = query.get("groupBy") {
                guard let chosen = UsageReport.Grouping(rawValue: String(text)) else { throw TaskListQuery.invalid("groupBy", "user, key, model or day") }
                grouping = chosen
            }
            let from = try query.get("from").map { try TaskListQuery.time(String($0), field: "from") }
            let to = try query.get("to").map { try TaskListQuery.time(String($0), field: "to") }
            let user = query.get("user").map { String($0) }
            let key = query.get("key").map { String($0) }
            var report = UsageReport(grouping: grouping)
            var filter = TaskFilter(before: to.map(TaskFilter.position(at:)), since: from)
            // Every page of the period, oldest last; each page examines a bounded number of records.
            while true {
                let page = try await tasks.recent(limit: 1000, user: user, filter: filter)
                for task in page.tasks where key == nil || task.apiKey == key { report.add(task) }
                guard let next = page.next else { break }
                filter.before = next
            }
            if request.headers[.accept]?.contains("text/csv") == true {
                var headers = HTTPFields()
                headers[.contentType] = "text/csv; charset=utf-8"
                headers[.contentDisposition] = "attachment; filename=\"sdbox-usage-\(grouping.rawValue).csv\""
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: report.csv)))
            }
            return try Response.json(UsageAnswer(
                groupBy: grouping.rawValue, from: from?.timeIntervalSince1970, to: to?.timeIntervalSince1970, user: user, key: key,
                rows: report.sortedRows, totals: report.totals
            ))
        }
    }

    struct UsageAnswer: Encodable {
        let groupBy: String
        let from: Double?
        let to: Double?
        let user: String?
        let key: String?
        let rows: [UsageReport.Row]
        let totals: UsageReport.Row
    }
}

@testable import Appliance
import Foundation
import SDBoxCore
import Testing

/// The usage report's sums and its CSV.
@Suite struct UsageReportTests {
    @Test func onlyFinalTasksCountAndTheCSVIsSafeForSpreadsheets() {
        var report = UsageReport(grouping: .user)
        var done = TaskRecord(id: "t1", kind: .txt2img, model: "m", user: "=cmd|' /C calc'!A0", request: ["width": 100, "height": 10, "steps": 3, "n_iter": 2])
        done.state = .succeeded
        done.startedAt = Date(timeIntervalSince1970: 10)
        done.finishedAt = Date(timeIntervalSince1970: 12.5)
        done.result = TaskResult(images: ["a", "b"], info: .null, parameters: .null)
        report.add(done)
        report.add(TaskRecord(id: "t2", kind: .txt2img, model: "m", user: "u", request: [:]))  // queued: not counted
        #expect(report.totals.tasks == 1 && report.totals.images == 2 && report.totals.pixelSteps == 100 * 10 * 3 * 2)
        #expect(report.totals.workerSeconds == 2.5)
        let lines = report.csv.split(separator: "\r\n").map(String.init)
        #expect(lines[1] == "'=cmd|' /C calc'!A0,1,2,6000,2.500", "a formula is not run by a spreadsheet")
        #expect(UsageReport.csvField("a,\"b\"") == "\"a,\"\"b\"\"\"")
    }
}

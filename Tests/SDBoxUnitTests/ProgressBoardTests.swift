import Foundation
import SDBoxCore
import Testing

@testable import Scheduler

@Suite struct ProgressBoardTests {
    @Test func answersTheLatestReportAndHasOnePollerRefreshAStaleOne() {
        let board = ProgressBoard(freshness: .milliseconds(100))
        let start = ContinuousClock.now
        #expect(board.latest(of: "t", now: start) == nil)
        var report = A1111.Progress.idle
        report.progress = 0.25
        board.post(report, of: "t", at: start)
        #expect(board.latest(of: "t", now: start.advanced(by: .milliseconds(99)))?.refresh == false)
        // Stale: still answered; the first poller refreshes it, the others do not.
        let stale = board.latest(of: "t", now: start.advanced(by: .milliseconds(150)))
        #expect(stale?.report?.progress == 0.25 && stale?.refresh == true)
        #expect(board.latest(of: "t", now: start.advanced(by: .milliseconds(160)))?.refresh == false)
        report.progress = 0.5
        board.post(report, of: "t", at: start.advanced(by: .milliseconds(170)))
        #expect(board.latest(of: "t", now: start.advanced(by: .milliseconds(180)))?.report?.progress == 0.5)
        #expect(board.latest(of: "t", now: start.advanced(by: .milliseconds(300)))?.refresh == true)
        board.remove("t")
        #expect(board.latest(of: "t") == nil)
    }
}

@Suite struct WorkerOutputTests {
    /// A full disk loses log lines, never the server (the old FileHandle.write trapped on ENOSPC).
    @Test func aFullDiskDropsLogLinesAndKeepsTheLastOnes() {
        let output = WorkerOutput(log: FileHandle(forWritingAtPath: "/dev/full"))
        for number in 1...30 { output.append("line \(number)") }
        #expect(output.lastLines.count == 20 && output.lastLines.last == "line 30")
        output.close()
    }
}

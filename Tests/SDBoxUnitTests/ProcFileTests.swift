#if canImport(Glibc)
import Glibc
#endif
@testable import Scheduler
import Testing

/// `/proc` read whole, and a process's stat fields after its command name.
@Suite struct ProcFileTests {
    @Test func statFieldsGiveTheParentGroupAndStartTime() throws {
        let fields = try #require(ProcFile.statFields(of: getpid()))
        #expect(Int32(fields[1]) == getppid())
        #expect(Int32(fields[2]) == getpgrp())
        #expect(WorkerReaper.startTime(of: getpid()) != nil)
        #expect(ProcFile.statFields(of: Int32.max) == nil)
    }
}

import ArgumentParser

/// `sdbox-bench`: benchmarks that print figures. They are not tests and assert nothing about speed.
@main
struct SDBoxBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sdbox-bench",
        abstract: "Benchmarks for sdbox; each prints its figures.",
        subcommands: [
            SchedulingBenchmark.self, UploadBenchmark.self, ThumbnailBenchmark.self, SDCppBenchmark.self, OverheadBenchmark.self,
            ControlPlaneBenchmark.self, FleetBenchmark.self, StaticBytesServer.self, ForwardingProxy.self,
        ]
    )
}

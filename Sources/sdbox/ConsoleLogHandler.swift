import Logging

/// sdbox's log lines on standard output, in swift-log's `StreamLogHandler` format, with a logger's metadata
/// formatted when a line is written rather than each time it is set: Hummingbird sets a request id on
/// every request's logger, and the stream handler formatted the whole metadata then (3 to 5% of the CPU a
/// status read takes), for lines that are almost never written.
struct ConsoleLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var line = StreamLogHandler.standardOutput(label: label, metadataProvider: metadataProvider)
        line.logLevel = logLevel
        line.metadata = metadata
        line.log(event: event)
    }
}

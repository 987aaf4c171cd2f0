import Appliance
import NIOPosix

/// One thread of its own for CPU-heavy work on what a client sent (decoding a large body, reading a PNG's
/// text): such work never occupies the threads that answer other requests, and two hostile requests
/// queue behind each other instead of taking every core.
enum CPUWork {
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        return pool
    }()

    /// Runs `work` on the CPU thread and returns its result.
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(work)
    }
}

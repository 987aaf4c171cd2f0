import Dispatch
import Foundation
import Logging
import Metrics
import Synchronization

/// Reads checkpoints into the page cache before their workers load them: a starting worker's checkpoint
/// at once (on a real box the process start, 30-70 s of imports, then finds its checkpoint in memory
/// rather than on disk), and the checkpoints of queued models that have no worker yet, most urgent first,
/// within a byte budget (`scheduler.readAheadMiB`). One thread reads, one file at a time, sequentially,
/// so that reading ahead never thrashes the disk; a queued model's checkpoint is read once while it stays
/// wanted.
public final class CheckpointReadAhead: Sendable {
    struct State {
        /// Checkpoints of starting workers, not read yet, in the order they started.
        var starting: [String] = []
        /// Checkpoints of queued models without a worker, most urgent first.
        var wanted: [String] = []
        /// Those of `wanted` read, or being read.
        var read: Set<String> = []
    }

    /// Bytes of queued models' checkpoints kept read ahead at most; 0 reads only starting workers'.
    let budgetBytes: Int64
    let logger: Logger
    let state = Mutex(State())
    let queue = DispatchQueue(label: "sdbox.checkpoint-read-ahead", qos: .utility)

    public init(budgetMiB: Int, logger: Logger) {
        self.budgetBytes = Int64(budgetMiB) << 20
        self.logger = logger
    }

    /// A worker starts on `path`: read it next.
    func starting(_ path: String) {
        state.withLock { $0.starting.append(path) }
        queue.async { self.readNext() }
    }

    /// The checkpoints of queued models that have no worker, most urgent first: read those within the
    /// budget that are not read yet.
    func queued(_ paths: [String]) {
        let changed = state.withLock { state -> Bool in
            guard state.wanted != paths else { return false }
            state.wanted = paths
            state.read.formIntersection(paths)
            return true
        }
        if changed { queue.async { self.readNext() } }
    }

    /// The checkpoints to keep read ahead: from the most urgent, while their sizes fit the budget together
    /// (files that cannot be read are passed over).
    static func select(_ candidates: [(path: String, size: Int64?)], budget: Int64) -> [String] {
        var total: Int64 = 0
        var chosen: [String] = []
        for (path, size) in candidates {
            guard let size else { continue }
            guard total + size <= budget else { break }
            total += size
            chosen.append(path)
        }
        return chosen
    }

    /// Reads the most urgent checkpoint not read yet, then asks for the next queued one. Runs on `queue`.
    func readNext() {
        let (starting, wanted, read) = state.withLock { state in
            (state.starting.isEmpty ? nil : state.starting.removeFirst(), state.wanted, state.read)
        }
        if let starting {
            readWhole(starting, reason: "starting")
            return
        }
        let sized = wanted.map { (path: $0, size: Self.size(ofFileAt: $0)) }
        guard let next = Self.select(sized, budget: budgetBytes).first(where: { !read.contains($0) }) else { return }
        let stillWanted = state.withLock { state in state.wanted.contains(next) && state.read.insert(next).inserted }
        guard stillWanted else { return }
        readWhole(next, reason: "queued")
        queue.async { self.readNext() }
    }

    static func size(ofFileAt path: String) -> Int64? {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : nil
    }

    /// Reads the whole file, which leaves it in the page cache.
    func readWhole(_ path: String, reason: String) {
        let started = ContinuousClock.now
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            logger.debug("cannot read checkpoint ahead", metadata: ["path": "\(path)", "errno": "\(errno)"])
            return
        }
        defer { close(descriptor) }
        _ = posix_fadvise(descriptor, 0, 0, POSIX_FADV_SEQUENTIAL)
        let chunk = 8 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var total: Int64 = 0
        while true {
            let count = read(descriptor, buffer, chunk)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            total += Int64(count)
        }
        Counter(label: "sdbox_checkpoint_read_ahead_bytes_total", dimensions: [("reason", reason)]).increment(by: Int64(total))
        let seconds = started.duration(to: .now)
        logger.info(
            "checkpoint read ahead",
            metadata: ["path": "\(path)", "reason": "\(reason)", "MiB": "\(total >> 20)", "seconds": "\(seconds)"]
        )
    }
}

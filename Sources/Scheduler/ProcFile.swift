#if canImport(Glibc)
import Glibc
#endif

/// Reading Linux's `/proc`, for what sdbox checks of its workers' processes (``PortListener``,
/// ``WorkerReaper``).
enum ProcFile {
    /// A `/proc` file's whole text, read to its end: such a file says it is empty, and Foundation's readers
    /// then stop after its first page (4 KiB of `/proc/net/tcp`, a few dozen sockets).
    static func text(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return count == 0 ? String(decoding: bytes, as: UTF8.self) : nil }
            bytes += chunk[..<count]
        }
    }

    /// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and parentheses):
    /// the first is field 3, the state; then the parent (4), the process group (5), ... the start time (22).
    static func statFields(of pid: Int32) -> [Substring]? {
        guard let stat = text("/proc/\(pid)/stat"), let nameEnd = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: nameEnd)...].split(separator: " ")
    }
}

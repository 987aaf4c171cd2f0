import Foundation

/// Who listens on a local TCP port, as Linux's `/proc` tells it: a worker sdbox starts is given a port that
/// was free a moment before, and another process may bind it first. Whatever answers there then answers
/// the readiness ping too, so before a started worker counts as ready, the listener must be the worker's
/// own: its process, one of its descendants, or a process of the process group sdbox made for it (a
/// server its launcher left running in the background is still in it; a process started before could not
/// have joined it).
enum PortListener: Equatable {
    /// The worker's own process listens on the port.
    case worker
    /// Another process listens on the port (its id).
    case stranger(pid: Int32)
    /// No listener could be told apart: none is listed, or its process cannot be read (another user's).
    case unknown

    /// Who listens on TCP `port` of 127.0.0.1 (there, or on any address), told against the processes of the
    /// worker `root`, which leads its own process group. Only a listener they do not hold sends the search
    /// through every process. Read on a thread of its own: the kernel walks every socket of the machine for
    /// `/proc/net/tcp` (tens of milliseconds with a few thousand).
    static func of(port: Int, root: Int32) async -> PortListener {
        await withCheckedContinuation { continuation in
            DispatchQueue.global(qos: .utility).async { continuation.resume(returning: reading(port: port, root: root)) }
        }
    }

    private static func reading(port: Int, root: Int32) -> PortListener {
        let sockets = listeningSockets(port: port)
        guard !sockets.isEmpty else { return .unknown }
        let processes = lineages()
        let own = workerProcesses(root: root, processes: processes)
        let elsewhere = sockets.subtracting(own.reduce(into: Set<String>()) { $0.formUnion(socketInodes(of: $1)) })
        if elsewhere.isEmpty { return .worker }
        // Another listener than the worker's (with SO_REUSEPORT both may listen, and the kernel would share
        // the calls out between them).
        let stranger = processes.keys.sorted().first { !own.contains($0) && !socketInodes(of: $0).isDisjoint(with: elsewhere) }
        return stranger.map { .stranger(pid: $0) } ?? .unknown
    }

    /// The addresses, as `/proc/net/tcp{,6}` writes them, whose listeners take a call to 127.0.0.1: 127.0.0.1
    /// and the IPv4 any address, and in IPv6 the any address (dual stack) and ::ffff:127.0.0.1.
    static let addressesReaching127001: Set<Substring> = [
        "0100007F", "00000000", "00000000000000000000000000000000", "0000000000000000FFFF00000100007F",
    ]

    /// The inodes of the sockets listening on `port` where a call to 127.0.0.1 reaches them, from
    /// `/proc/net/tcp` and `/proc/net/tcp6`.
    static func listeningSockets(port: Int) -> Set<String> {
        let portHex = String(format: "%04X", port)
        var inodes: Set<String> = []
        for table in ["tcp", "tcp6"] {
            guard let text = ProcFile.text("/proc/net/\(table)") else { continue }
            // Columns: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            for line in text.split(separator: "\n").dropFirst() {
                let columns = line.split(separator: " ", omittingEmptySubsequences: true)
                guard columns.count > 9, columns[3] == "0A" else { continue }
                let local = columns[1].split(separator: ":")
                guard local.count == 2, local[1] == portHex, addressesReaching127001.contains(local[0]) else { continue }
                inodes.insert(String(columns[9]))
            }
        }
        return inodes
    }

    /// A process's parent and process group.
    struct Lineage: Equatable {
        let parent: Int32
        let group: Int32
    }

    /// Every readable process's lineage, from `/proc/<pid>/stat`.
    static func lineages() -> [Int32: Lineage] {
        var processes: [Int32: Lineage] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let fields = ProcFile.statFields(of: pid) else { continue }
            if fields.count > 2, let parent = Int32(fields[1]), let group = Int32(fields[2]) {
                processes[pid] = Lineage(parent: parent, group: group)
            }
        }
        return processes
    }

    /// The worker `root`'s own processes: itself, every process below it, and every process of its group.
    static func workerProcesses(root: Int32, processes: [Int32: Lineage]) -> Set<Int32> {
        var children: [Int32: [Int32]] = [:]
        for (pid, lineage) in processes { children[lineage.parent, default: []].append(pid) }
        var own: Set<Int32> = [root]
        var next = [root]
        while let pid = next.popLast() {
            for child in children[pid] ?? [] where own.insert(child).inserted { next.append(child) }
        }
        for (pid, lineage) in processes where lineage.group == root { own.insert(pid) }
        return own
    }

    /// The inodes of the sockets process `pid` holds open (empty if its descriptors cannot be read).
    static func socketInodes(of pid: Int32) -> Set<String> {
        let folder = "/proc/\(pid)/fd"
        var inodes: Set<String> = []
        for descriptor in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(folder)/\(descriptor)"),
                target.hasPrefix("socket:["), target.hasSuffix("]")
            else { continue }
            inodes.insert(String(target.dropFirst(8).dropLast()))
        }
        return inodes
    }
}

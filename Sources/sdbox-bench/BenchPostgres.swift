import Foundation
import SDBoxCore

/// A PostgreSQL server of a benchmark, from Debian's `postgresql` package: a cluster made with `initdb` in
/// `folder`, run in the foreground as a ``BenchProcess`` on a free loopback port, with PostgreSQL's own
/// durable defaults (fsync on). PostgreSQL refuses to run as root, so as root it runs as the unprivileged
/// system user `sdbox-test` (the test suite's, made when missing).
struct BenchPostgres {
    let process: BenchProcess
    let port: Int
    /// PostgreSQL's programs (`initdb`, `postgres`, `createdb`).
    let programs: String

    /// The superuser of the cluster, trusted on loopback without a password.
    static let superuser = "sdbox"
    static let systemUser = "sdbox-test"

    /// Makes the cluster in `folder` (which must not exist yet) and starts it.
    static func start(in folder: String) async throws -> BenchPostgres {
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).compactMap(Int.init).sorted()
        guard let version = versions.last(where: { FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\($0)/bin/initdb") }) else {
            throw BenchmarkError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): apt install postgresql")
        }
        let programs = "/usr/lib/postgresql/\(version)/bin"
        var asUser: [String] = []
        if getuid() == 0 {
            if getpwnam(systemUser) == nil {
                _ = try BenchProcess.output(of: ["/usr/sbin/useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", systemUser])
            }
            asUser = ["/usr/sbin/runuser", "-u", systemUser, "--"]
        }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        if getuid() == 0 { _ = try BenchProcess.output(of: ["/bin/chown", systemUser, folder]) }
        _ = try BenchProcess.output(of: asUser + [programs + "/initdb", "-D", folder + "/data", "-U", superuser, "-A", "trust", "-E", "UTF8", "--no-locale"])
        guard let port = FreePort.allocate() else { throw BenchmarkError("no free port") }
        let process = BenchProcess(
            asUser + [programs + "/postgres", "-D", folder + "/data", "-p", "\(port)", "-k", folder, "-c", "listen_addresses=127.0.0.1"],
            log: folder + "/postgres.log"
        )
        let server = BenchPostgres(process: process, port: port, programs: programs)
        let deadline = ContinuousClock.now + .seconds(60)
        while (try? BenchProcess.output(of: [programs + "/pg_isready", "-q", "-h", "127.0.0.1", "-p", "\(port)", "-U", superuser, "-d", "postgres"])) == nil {
            guard ContinuousClock.now < deadline, !process.hasEnded else { throw BenchmarkError("PostgreSQL did not start; see \(process.log)") }
            try await Task.sleep(for: .milliseconds(100))
        }
        return server
    }

    /// Makes an empty database `name` and returns its URL.
    func makeDatabase(_ name: String) throws -> String {
        _ = try BenchProcess.output(of: [programs + "/createdb", "-h", "127.0.0.1", "-p", "\(port)", "-U", Self.superuser, name])
        return "postgres://\(Self.superuser)@127.0.0.1:\(port)/\(name)?sslmode=disable"
    }

    /// The errors PostgreSQL logged (`ERROR`, `FATAL`, `PANIC` lines), with their count, most frequent first.
    func loggedErrors() -> [(count: Int, line: String)] {
        let log = (try? String(contentsOfFile: process.log, encoding: .utf8)) ?? ""
        var counts: [String: Int] = [:]
        for line in log.split(separator: "\n") {
            guard let level = ["ERROR:", "FATAL:", "PANIC:"].compactMap({ line.range(of: $0) }).first else { continue }
            counts[String(line[level.lowerBound...]), default: 0] += 1
        }
        return counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { (count: $0.value, line: $0.key) }
    }
}

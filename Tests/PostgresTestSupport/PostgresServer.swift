import Foundation
import SDBoxCore
import Synchronization

/// A throw-away PostgreSQL server for the tests, from Debian's `postgresql` package: a cluster made with
/// `initdb` in a temporary folder, run by the unprivileged user `sdbox-test` (made with `useradd --system`
/// when the tests run as root; PostgreSQL refuses to run as root), on a free loopback port, with fsync
/// off (tests only). One server serves the whole test process (``shared()``), each test its own
/// database (``makeDatabase()``); it is stopped, and its folder removed, when the process exits.
public final class PostgresServer: Sendable {
    /// The loopback port it listens on.
    public let port: Int
    /// The folder of the cluster (`data/`), its socket and its log.
    public let folder: String
    /// The folder of PostgreSQL's programs (`initdb`, `pg_ctl`, `createdb`).
    let programs: String
    /// The system user that runs it, or nil when the tests do not run as root.
    let user: String?

    /// The superuser of the cluster, who owns every test database (trusted on loopback, no password).
    public static let superuser = "sdbox"
    static let systemUser = "sdbox-test"
    private static let sharedServer = Result { try PostgresServer() }
    private static let started = Mutex<[String]>([])

    // Every call that waits for a PostgreSQL program (initdb, pg_ctl, createdb, psql) runs on a thread of
    // its own: on Swift's cooperative pool (two threads on two cores) a few such waits at once stalled every
    // other test's requests for a minute in CI.

    /// The server of this test process, started on first use.
    public static func shared() async throws -> PostgresServer {
        try await offThePool { try sharedServer.get() }
    }

    /// A server of its own, for a test that stops and starts it (an outage); stopped at process exit too.
    public static func dedicated() async throws -> PostgresServer {
        try await offThePool { try PostgresServer() }
    }

    /// Stops the server as a restart of PostgreSQL does: every connection closed, committed work kept
    /// (`pg_ctl stop -m fast`; an immediate stop would lose it, as the test servers run without fsync).
    public func stop() async throws {
        let (user, programs, folder) = (user, programs, folder)
        _ = try await Self.offThePool {
            try Self.run(asUser: user, programs + "/pg_ctl", ["-D", folder + "/data", "-w", "-t", "60", "-m", "fast", "stop"])
        }
    }

    /// Starts the stopped server again, on its port.
    public func start() async throws {
        let (user, programs, folder, port) = (user, programs, folder, port)
        _ = try await Self.offThePool { try Self.run(asUser: user, programs + "/pg_ctl", Self.startArguments(folder: folder, port: port)) }
    }

    /// Makes a new, empty database and returns its `postgres://` URL.
    public func makeDatabase() async throws -> String {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let (programs, port) = (programs, port)
        _ = try await Self.offThePool { try Self.run(programs + "/createdb", ["-h", "127.0.0.1", "-p", "\(port)", "-U", Self.superuser, name]) }
        return url(database: name)
    }

    /// What `psql` prints for `sql` on the database at `url` (unaligned, tuples only).
    public func psql(_ url: String, _ sql: String) async throws -> String {
        let programs = programs
        return try await Self.offThePool {
            try Self.run(programs + "/psql", ["-X", "-A", "-t", "-c", sql, url]).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// Runs `body`, which blocks, on a thread of its own.
    static func offThePool<R: Sendable>(_ body: @escaping @Sendable () throws -> R) async throws -> R {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
        }
    }

    /// The URL of database `name` on this server.
    public func url(database name: String) -> String {
        "postgres://\(Self.superuser)@127.0.0.1:\(port)/\(name)?sslmode=disable"
    }

    private init() throws {
        programs = try Self.locatePrograms()
        user = getuid() == 0 ? try Self.ensureSystemUser() : nil
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-pg-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        if let user { try Self.run("/bin/chown", [user, folder]) }
        try Self.run(asUser: user, programs + "/initdb", ["-D", folder + "/data", "-U", Self.superuser, "-A", "trust", "-E", "UTF8", "--no-locale", "-N"])
        var attempts = 0
        while true {
            // Another test process may take the free port first: then pg_ctl fails, and another is tried.
            guard let port = FreePort.allocate() else { throw PostgresServerError("no free port") }
            do {
                try Self.run(asUser: user, programs + "/pg_ctl", Self.startArguments(folder: folder, port: port))
                self.port = port
                break
            } catch where attempts < 3 {
                attempts += 1
            }
        }
        Self.stopAtExit(folder)
    }

    /// `pg_ctl`'s arguments to start the cluster in `folder` on `port` (fsync off: tests only).
    static func startArguments(folder: String, port: Int) -> [String] {
        [
            "-D", folder + "/data", "-l", folder + "/server.log", "-w", "-t", "60", "start", "-o",
            "-p \(port) -k \(folder) -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        ]
    }

    /// The programs of the newest PostgreSQL installed: `pg_config --bindir`, else `/usr/lib/postgresql/*/bin`.
    static func locatePrograms() throws -> String {
        if let bindir = try? run("/usr/bin/pg_config", ["--bindir"]).trimmingCharacters(in: .whitespacesAndNewlines),
            FileManager.default.isExecutableFile(atPath: bindir + "/initdb")
        {
            return bindir
        }
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).compactMap(Int.init).sorted()
        guard let version = versions.last(where: { FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\($0)/bin/initdb") }) else {
            throw PostgresServerError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/install-test-deps.sh")
        }
        return "/usr/lib/postgresql/\(version)/bin"
    }

    /// Makes the system user `sdbox-test` unless it exists.
    static func ensureSystemUser() throws -> String {
        if getpwnam(systemUser) == nil {
            try run("/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", systemUser])
        }
        return systemUser
    }

    /// Stops the server (immediate shutdown) and removes its folder when the test process exits.
    private static func stopAtExit(_ folder: String) {
        let first = started.withLock { folders in
            folders.append(folder)
            return folders.count == 1
        }
        guard first else { return }
        atexit {
            for folder in PostgresServer.started.withLock({ $0 }) {
                let pidFile = (try? String(contentsOfFile: folder + "/data/postmaster.pid", encoding: .utf8)) ?? ""
                if let pid = pidFile.split(separator: "\n").first.flatMap({ pid_t($0) }) {
                    kill(pid, SIGQUIT)
                    for _ in 0..<100 where kill(pid, 0) == 0 { usleep(20_000) }
                }
                try? FileManager.default.removeItem(atPath: folder)
            }
        }
    }

    /// Runs a program as `user` (through `runuser`), or as this process's user when nil.
    @discardableResult
    static func run(asUser user: String?, _ program: String, _ arguments: [String]) throws -> String {
        guard let user else { return try run(program, arguments) }
        return try run("/usr/sbin/runuser", ["-u", user, "--", program] + arguments)
    }

    /// Runs a program to its end and returns what it printed; throws with its output if it failed.
    ///
    /// Spawned and awaited directly (`posix_spawn`, `waitpid`), with a clean signal mask; the output goes
    /// through a file, not a pipe: `pg_ctl start` leaves the server running, and a pipe it inherited would
    /// never reach its end.
    @discardableResult
    static func run(_ program: String, _ arguments: [String]) throws -> String {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("sdbox-pg-run-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, program, &actions, &attributes, argv, environ)
        guard spawned == 0 else { throw PostgresServerError("\(program) could not be started: \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // Exited normally with status 0 (the wait status's low 7 bits are the signal, the next 8 the status).
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw PostgresServerError("\(([program] + arguments).joined(separator: " ")) failed (wait status \(status)): \(text)")
        }
        return text
    }
}

/// The test PostgreSQL server could not be started or used.
public struct PostgresServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

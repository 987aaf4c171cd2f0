import CLMDB
import Foundation
import Synchronization

extension LMDBEnvironment {
    /// Writes a consistent copy of the LMDB environment in the folder `path` to the new file `destination`
    /// (refused if it exists), compacted (free pages left out, `MDB_CP_COMPACT`), and syncs it to disk.
    ///
    /// The copy may be taken while another process (a running `sdbox serve`) writes to the environment:
    /// it is opened read-only with `MDB_NOTLS`, and LMDB's lock file registers this process as a reader,
    /// whose one read transaction sees a single committed state of every table while writers go on. The
    /// copy is a whole environment's `data.mdb`; put it in an empty folder to open it. Blocks for as long
    /// as the copy takes: call it off any event loop. An environment this process already has open is
    /// copied through that one (LMDB wants one open environment per file in a process).
    public static func copy(environmentAt path: String, to destination: String) throws {
        guard FileManager.default.fileExists(atPath: path + "/data.mdb") else { throw LMDBError(ENOENT, "copy: no \(path)/data.mdb") }
        let folder = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        if let open = openInProcess.withLock({ $0[folder]?.environment }) {
            try copy(open.handle, to: destination)
            return
        }
        var env: OpaquePointer?
        try check(mdb_env_create(&env), "env_create")
        guard let env else { throw LMDBError(EINVAL, "env_create") }
        defer { mdb_env_close(env) }
        try check(mdb_env_set_maxdbs(env, 32), "set_maxdbs")
        try check(mdb_env_set_maxreaders(env, 256), "set_maxreaders")
        try check(mdb_env_open(env, path, UInt32(MDB_RDONLY | MDB_NOTLS), 0o600), "env_open")
        try copy(env, to: destination)
    }

    /// Writes a compacted copy of the open environment `env` to the new file `destination`, fsync'd.
    static func copy(_ env: OpaquePointer, to destination: String) throws {
        let fd = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw LMDBError(errno, "copy: open \(destination)") }
        var failure: LMDBError?
        let rc = mdb_env_copyfd2(env, fd, UInt32(MDB_CP_COMPACT))
        if rc != 0 {
            failure = LMDBError(rc, "env_copyfd2")
        } else if fsync(fd) != 0 {
            failure = LMDBError(errno, "copy: fsync \(destination)")
        }
        if close(fd) != 0 && failure == nil { failure = LMDBError(errno, "copy: close \(destination)") }
        if let failure {
            unlink(destination)
            throw failure
        }
    }
}

extension Database {
    /// How many records the database holds, by kind: what a restore reports.
    public struct Counts: Sendable, Equatable {
        public var tasks: Int
        public var models: Int
        public var keys: Int
        public var users: Int

        public init(tasks: Int, models: Int, keys: Int, users: Int) {
            self.tasks = tasks
            self.models = models
            self.keys = keys
            self.users = users
        }
    }

    /// How many tasks, models, API keys and users the database holds (from LMDB's own table statistics,
    /// without reading the records).
    public func counts() async throws -> Counts {
        try await read { txn, tables in
            func entries(_ table: LMDBTable) throws -> Int {
                var stat = MDB_stat()
                try check(mdb_stat(txn.handle, table.dbi, &stat), "stat(\(table.name))")
                return stat.ms_entries
            }
            return Counts(tasks: try entries(tables.tasks), models: try entries(tables.models), keys: try entries(tables.keys), users: try entries(tables.users))
        }
    }
}

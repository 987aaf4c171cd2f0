import CLMDB
import Foundation
import Synchronization

/// An error reported by LMDB, with its code and message.
public struct LMDBError: Error, Sendable, CustomStringConvertible {
    public let code: Int32
    public let operation: String

    init(_ code: Int32, _ operation: String) {
        self.code = code
        self.operation = operation
    }

    /// Whether the disk (or LMDB's map) is full: the write can succeed once space is freed.
    public var isOutOfSpace: Bool {
        code == ENOSPC || code == EDQUOT || code == MDB_MAP_FULL
    }

    public var description: String {
        "LMDB \(operation) failed: \(String(cString: mdb_strerror(code))) (\(code))"
    }
}

@inline(__always)
func check(_ code: Int32, _ operation: String) throws(LMDBError) {
    guard code == 0 else { throw LMDBError(code, operation) }
}

/// An LMDB environment: one memory-mapped file holding named tables.
///
/// Transactions are synchronous closures: a transaction never spans an `await`, so it starts and ends on
/// one thread as LMDB requires. The environment is opened with `MDB_NOTLS` because Swift tasks move
/// between threads. Call it from a thread pool, never from an event loop (``Database`` does that).
public final class LMDBEnvironment: @unchecked Sendable {
    // Safety: an LMDB environment handle may be used from any thread when opened with MDB_NOTLS;
    // transactions never escape the closures below.
    let handle: OpaquePointer
    /// The folder, as its real path: the key under which this process's open environments are known.
    let folder: String

    /// The environments this process has open, by real path. LMDB allows one open environment per file
    /// in a process: a second one would take the process's own lock for a sign that nobody else has the
    /// file open and reset the lock table under the first. ``copy(environmentAt:to:)`` copies through the
    /// one already open.
    static let openInProcess = Mutex<[String: WeakEnvironment]>([:])

    /// A reference to an open environment that does not keep it open.
    struct WeakEnvironment: @unchecked Sendable {
        // Safety: only read and written under `openInProcess`'s lock.
        weak var environment: LMDBEnvironment?
    }

    /// Opens (creating if needed) the environment in the folder `path`.
    public init(path: String, mapSize: Int = 64 << 30, maxTables: UInt32 = 32) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        var env: OpaquePointer?
        try check(mdb_env_create(&env), "env_create")
        guard let env else { throw LMDBError(EINVAL, "env_create") }
        do {
            try check(mdb_env_set_mapsize(env, mapSize), "set_mapsize")
            try check(mdb_env_set_maxdbs(env, maxTables), "set_maxdbs")
            try check(mdb_env_set_maxreaders(env, 256), "set_maxreaders")
            try check(mdb_env_open(env, path, UInt32(MDB_NOTLS), 0o600), "env_open")
        } catch {
            mdb_env_close(env)
            throw error
        }
        self.handle = env
        self.folder = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        Self.openInProcess.withLock { $0[folder] = WeakEnvironment(environment: self) }
    }

    deinit {
        Self.openInProcess.withLock { open in
            if open[folder]?.environment == nil || open[folder]?.environment === self { open[folder] = nil }
        }
        mdb_env_close(handle)
    }

    /// Opens a named table, creating it if it does not exist.
    public func openTable(named name: String) throws -> LMDBTable {
        try write { txn in
            var dbi: MDB_dbi = 0
            try check(mdb_dbi_open(txn.handle, name, UInt32(MDB_CREATE), &dbi), "dbi_open(\(name))")
            return LMDBTable(name: name, dbi: dbi)
        }
    }

    /// Runs `body` in a read-only transaction.
    public func read<R>(_ body: (LMDBTransaction) throws -> R) throws -> R {
        let txn = try LMDBTransaction(environment: handle, readOnly: true)
        defer { mdb_txn_abort(txn.handle) }
        return try body(txn)
    }

    /// Runs `body` in a write transaction, committed when `body` returns and aborted when it throws.
    public func write<R>(_ body: (LMDBTransaction) throws -> R) throws -> R {
        let txn = try LMDBTransaction(environment: handle, readOnly: false)
        let result: R
        do {
            result = try body(txn)
        } catch {
            mdb_txn_abort(txn.handle)
            throw error
        }
        try check(mdb_txn_commit(txn.handle), "txn_commit")
        return result
    }
}

/// A named table (LMDB "database") in an environment.
public struct LMDBTable: Sendable {
    public let name: String
    let dbi: MDB_dbi
}

/// A transaction, valid only inside the closure given to ``LMDBEnvironment/read(_:)`` or
/// ``LMDBEnvironment/write(_:)``.
public struct LMDBTransaction {
    let handle: OpaquePointer

    init(environment: OpaquePointer, readOnly: Bool, parent: LMDBTransaction? = nil) throws(LMDBError) {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(environment, parent?.handle, readOnly ? UInt32(MDB_RDONLY) : 0, &txn), "txn_begin")
        guard let txn else { throw LMDBError(EINVAL, "txn_begin") }
        self.handle = txn
    }

    /// Runs `body` in a transaction nested in this write transaction: its changes join this one's when it
    /// returns true, and are undone when it returns false.
    func nested(_ body: (LMDBTransaction) -> Bool) throws(LMDBError) {
        let child = try LMDBTransaction(environment: mdb_txn_env(handle), readOnly: false, parent: self)
        if body(child) {
            try check(mdb_txn_commit(child.handle), "txn_commit(nested)")
        } else {
            mdb_txn_abort(child.handle)
        }
    }

    /// The value stored under `key`, or `nil`.
    public func get(_ table: LMDBTable, key: String) throws(LMDBError) -> [UInt8]? {
        var keyBytes = Array(key.utf8)
        var value = MDB_val()
        let rc = keyBytes.withUnsafeMutableBytes { keyBuffer in
            var mdbKey = MDB_val(mv_size: keyBuffer.count, mv_data: keyBuffer.baseAddress)
            return mdb_get(handle, table.dbi, &mdbKey, &value)
        }
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "get(\(table.name))")
        return Array(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
    }

    /// Stores `value` under `key`. With `overwrite: false`, returns `false` and changes nothing when the key exists.
    @discardableResult
    public func put(_ table: LMDBTable, key: String, value: some ContiguousBytes, overwrite: Bool = true) throws(LMDBError) -> Bool {
        var keyBytes = Array(key.utf8)
        let rc = keyBytes.withUnsafeMutableBytes { keyBuffer in
            value.withUnsafeBytes { valueBuffer in
                var mdbKey = MDB_val(mv_size: keyBuffer.count, mv_data: keyBuffer.baseAddress)
                var mdbValue = MDB_val(mv_size: valueBuffer.count, mv_data: UnsafeMutableRawPointer(mutating: valueBuffer.baseAddress))
                return mdb_put(handle, table.dbi, &mdbKey, &mdbValue, overwrite ? 0 : UInt32(MDB_NOOVERWRITE))
            }
        }
        if rc == MDB_KEYEXIST && !overwrite { return false }
        try check(rc, "put(\(table.name))")
        return true
    }

    /// Removes `key`; returns whether it was there.
    @discardableResult
    public func delete(_ table: LMDBTable, key: String) throws(LMDBError) -> Bool {
        var keyBytes = Array(key.utf8)
        let rc = keyBytes.withUnsafeMutableBytes { keyBuffer in
            var mdbKey = MDB_val(mv_size: keyBuffer.count, mv_data: keyBuffer.baseAddress)
            return mdb_del(handle, table.dbi, &mdbKey, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "del(\(table.name))")
        return true
    }

    /// Calls `body` with each key and value in key order from the first key not less than `start`, or in
    /// reverse order from the last key not greater than `start`, until `body` returns `false`.
    public func forEach(
        _ table: LMDBTable,
        from start: String? = nil,
        reverse: Bool = false,
        _ body: (String, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(handle, table.dbi, &cursor), "cursor_open(\(table.name))")
        defer { mdb_cursor_close(cursor) }
        var key = MDB_val()
        var value = MDB_val()
        var startBytes = Array((start ?? "").utf8)
        var rc: Int32 = startBytes.withUnsafeMutableBytes { buffer in
            guard start != nil else { return mdb_cursor_get(cursor, &key, &value, reverse ? MDB_LAST : MDB_FIRST) }
            key = MDB_val(mv_size: buffer.count, mv_data: buffer.baseAddress)
            let rc = mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE)
            guard reverse else { return rc }
            // SET_RANGE found the first key not less than `start`: step back over it unless it is `start`.
            if rc == MDB_NOTFOUND { return mdb_cursor_get(cursor, &key, &value, MDB_LAST) }
            let found = UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size)
            if rc == 0, !found.elementsEqual(UnsafeRawBufferPointer(buffer)) {
                return mdb_cursor_get(cursor, &key, &value, MDB_PREV)
            }
            return rc
        }
        while rc == 0 {
            let keyString = String(decoding: UnsafeRawBufferPointer(start: key.mv_data, count: key.mv_size), as: UTF8.self)
            guard try body(keyString, UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size)) else { return }
            rc = mdb_cursor_get(cursor, &key, &value, reverse ? MDB_PREV : MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try check(rc, "cursor_get(\(table.name))") }
    }
}

import Logging
import PostgresNIO

/// sdbox's schema in PostgreSQL, as numbered migrations: each is applied once, in a transaction, at
/// start, and recorded in `sdbox_schema_migrations`. A transaction-scoped advisory lock makes boxes that
/// start together apply them one at a time. Never change a migration that has shipped: add the next one.
enum PostgresMigrations {
    /// One step of the schema.
    struct Migration: Sendable {
        let version: Int
        let name: String
        let statements: [String]
    }

    /// The advisory lock key that serialises migrations (any constant that no other user of the database picks).
    static let lockKey: Int64 = 0x5344_424f_585f_4d49

    static let all: [Migration] = [
        Migration(version: 1, name: "stores", statements: [
            // Tasks: the record as jsonb, beside the columns queries select and order by. `position` is the
            // time index's key (TaskFilter.position(of:)), compared bytewise. The claim columns are the
            // fleet's (claims with FOR UPDATE SKIP LOCKED, fencing by claim_epoch: PostgresTaskClaims).
            """
            CREATE TABLE sdbox_tasks (
                id text PRIMARY KEY,
                position text COLLATE "C" NOT NULL UNIQUE,
                state text NOT NULL,
                final boolean NOT NULL,
                user_name text NOT NULL,
                model text NOT NULL,
                created_at timestamptz NOT NULL,
                callback_pending boolean NOT NULL,
                record jsonb NOT NULL,
                claimed_by text,
                claim_epoch bigint NOT NULL DEFAULT 0,
                lease_expires_at timestamptz
            ) WITH (fillfactor = 85)
            """,
            "CREATE INDEX sdbox_tasks_active ON sdbox_tasks (position) WHERE NOT final",
            "CREATE INDEX sdbox_tasks_callbacks ON sdbox_tasks (position) WHERE callback_pending",
            "CREATE INDEX sdbox_tasks_queued ON sdbox_tasks (model, position) WHERE state = 'queued'",
            #"CREATE TABLE sdbox_models (type text COLLATE "C" NOT NULL, name text COLLATE "C" NOT NULL, record jsonb NOT NULL, PRIMARY KEY (type, name))"#,
            // Pools by their function name (PoolRecord.name(forModel:)), as LMDB keys them.
            #"CREATE TABLE sdbox_pools (name text COLLATE "C" PRIMARY KEY, record jsonb NOT NULL)"#,
            // Settings: options/<user>, remoteWorkers, queuePause, modelInstalls, quotas.
            #"CREATE TABLE sdbox_settings (key text COLLATE "C" PRIMARY KEY, value jsonb NOT NULL)"#,
            #"CREATE TABLE sdbox_api_keys (id text COLLATE "C" PRIMARY KEY, created_at timestamptz NOT NULL, record jsonb NOT NULL)"#,
            #"CREATE TABLE sdbox_users (name text COLLATE "C" PRIMARY KEY, record jsonb NOT NULL)"#,
            "CREATE TABLE sdbox_sessions (token_hash text PRIMARY KEY, user_name text NOT NULL, record jsonb NOT NULL)",
            "CREATE INDEX sdbox_sessions_user ON sdbox_sessions (user_name)",
        ]),
        // The boxes using the database, each renewing its row while it runs (PostgresNodeLease).
        Migration(version: 2, name: "nodes", statements: [
            #"CREATE TABLE sdbox_nodes (name text COLLATE "C" PRIMARY KEY, instance text NOT NULL, started_at timestamptz NOT NULL, heartbeat_at timestamptz NOT NULL)"#,
        ]),
        // The fleet: each box's report (GPUs, workers) beside its heartbeat, and its claims found quickly.
        Migration(version: 3, name: "fleet", statements: [
            "ALTER TABLE sdbox_nodes ADD COLUMN report jsonb",
            "CREATE INDEX sdbox_tasks_claimed ON sdbox_tasks (claimed_by) WHERE NOT final",
        ]),
        // Webhooks in a fleet: the box that delivers a final task's webhook (the one that ended it, or the
        // one that took it over from a box that stopped), so that no two boxes deliver one.
        Migration(version: 4, name: "webhook deliverers", statements: [
            "ALTER TABLE sdbox_tasks ADD COLUMN callback_by text",
        ]),
        // The per-user queue limits across a fleet: the box that accepted each task, and what its request
        // takes stored (JSONValue.storageSize), summed over a user's unfinished tasks (PostgresUnfinishedUsage).
        Migration(version: 5, name: "accepting boxes", statements: [
            "ALTER TABLE sdbox_tasks ADD COLUMN accepted_by text, ADD COLUMN request_bytes bigint NOT NULL DEFAULT 0",
            "CREATE INDEX sdbox_tasks_user_unfinished ON sdbox_tasks (user_name) WHERE NOT final",
        ]),
    ]

    /// The newest schema version this sdbox knows.
    static var latest: Int { all.map(\.version).max() ?? 0 }

    /// Applies every migration the database lacks, on `connection`; refuses a database whose schema is
    /// newer than this sdbox knows. Returns the versions applied.
    @discardableResult
    static func apply(on connection: PostgresConnection, logger: Logger) async throws -> [Int] {
        var applied: [Int] = []
        for migration in all {
            let ran = try await connection.transaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger)
                try await connection.query(
                    "CREATE TABLE IF NOT EXISTS sdbox_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                    logger: logger
                )
                let current = try await version(on: connection, logger: logger)
                if current > latest {
                    throw PostgresStoreError("the database's schema is at version \(current), newer than this sdbox knows (\(latest)): upgrade sdbox")
                }
                guard migration.version > current else { return false }
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO sdbox_schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))", logger: logger
                )
                return true
            }
            if ran {
                logger.notice("database: applied schema migration \(migration.version) (\(migration.name))")
                applied.append(migration.version)
            }
        }
        return applied
    }

    /// The schema version of the database: the newest migration applied, 0 when none is.
    static func version(on connection: PostgresConnection, logger: Logger) async throws -> Int {
        for try await exists in try await connection.query("SELECT to_regclass('sdbox_schema_migrations') IS NOT NULL", logger: logger).decode(Bool.self) {
            guard exists else { return 0 }
        }
        for try await version in try await connection.query("SELECT coalesce(max(version), 0) FROM sdbox_schema_migrations", logger: logger).decode(Int.self) {
            return version
        }
        return 0
    }
}

import Foundation
import Logging
import PostgresTestSupport
import SDBoxCore
import Storage
import Testing

/// What is PostgreSQL's own: its URL, its migrations, and the errors an operator sees.
@Suite struct PostgresDatabaseTests {
    let logger = Logger(label: "sdbox.test.postgres")

    @Test func urlsAreReadAndShownWithoutTheirPassword() throws {
        let location = try PostgresLocation(url: "postgres://sd%40box:s3cret@db.example:6543/sdbox?sslmode=require")
        #expect(location.username == "sd@box" && location.password == "s3cret" && location.host == "db.example" && location.port == 6543)
        #expect(location.database == "sdbox" && location.tls == .require)
        #expect(location.masked == "postgres://sd@box:***@db.example:6543/sdbox?sslmode=require" && !location.description.contains("s3cret"))
        let socket = try PostgresLocation(url: "postgresql://sdbox@/sdbox?host=/run/postgresql")
        #expect(socket.socketFolder == "/run/postgresql" && socket.database == "sdbox")
        #expect(try PostgresLocation(url: "postgres://ann@localhost").database == "ann", "the user's name, as libpq does")
        for bad in ["mysql://a:pw@h/d", "postgres://h/d", "postgres://a:pw@h/d?sslmode=sometimes", "postgres://a:pw@h/d?pool=3"] {
            #expect {
                try PostgresLocation(url: bad)
            } throws: { error in
                "\(error)".contains("postgres") && !"\(error)".contains("pw@")
            }
        }
    }

    /// Boxes that start together on a new database migrate it once; a later start finds nothing to do.
    @Test func migrationsApplyOnceEvenWhenBoxesStartTogether() async throws {
        let location = try PostgresLocation(url: try await PostgresServer.shared().makeDatabase())
        #expect(try await PostgresDatabase.schemaVersion(at: location, logger: logger).current == 0)
        let databases = try await withThrowingTaskGroup(of: PostgresDatabase.self) { group in
            for _ in 0..<4 { group.addTask { try await PostgresDatabase.open(location, maxConnections: 2, logger: logger) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let version = try await PostgresDatabase.schemaVersion(at: location, logger: logger)
        #expect(version.current == version.latest && version.latest >= 1)
        _ = try await PostgresTaskStore(database: databases[0], node: "test", claims: HeldClaims()).insert(StoreSuite.makeTask("shared"))
        #expect(try await PostgresTaskStore(database: databases[3], node: "test", claims: HeldClaims()).get("shared") != nil, "one schema, one set of tables")
        for database in databases { await database.close() }
    }

    @Test func aDatabaseThatCannotBeReachedIsNamedWithoutItsPassword() async throws {
        let port = try #require(FreePort.allocate())
        let location = try PostgresLocation(url: "postgres://sdbox:hunter2@127.0.0.1:\(port)/sdbox?sslmode=disable")
        await #expect {
            _ = try await PostgresDatabase.open(location, logger: logger)
        } throws: { error in
            let text = "\(error)"
            return text.contains("cannot be reached") && text.contains("postgres://sdbox:***@127.0.0.1:\(port)/sdbox") && !text.contains("hunter2")
        }
        let server = try await PostgresServer.shared()
        await #expect {
            _ = try await PostgresDatabase.open(try PostgresLocation(url: server.url(database: "no_such_database")), logger: logger)
        } throws: { error in
            "\(error)".contains("does not exist")
        }
    }
}

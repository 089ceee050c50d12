import CSQLite
import Storage
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh file path under the temporary directory, removed (with its WAL files) by `cleanUp`.
private struct TemporaryDatabaseFile {
    let path: String

    init(_ name: String = #function) {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        path = "/tmp/storage-tests-\(safe)-\(UInt64.random(in: 0...UInt64.max)).sqlite"
    }

    func cleanUp() {
        for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
    }
}

private let keyValueSchema = [
    Migration("create kv", sql: "CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB, n INTEGER, x REAL)"),
]

private func count(_ database: Database, _ table: String = "kv") throws -> Int64 {
    try database.withConnection { db in
        let statement = try db.statement("SELECT count(*) FROM \(table)")
        #expect(try statement.step())
        return statement.int64(at: 0)
    }
}

@Suite struct DatabaseTests {
    @Test func inMemoryDatabaseRoundTripsEveryType() throws {
        let database = try Database.inMemory()
        try database.migrate(keyValueSchema)
        let blob: [UInt8] = [0, 1, 2, 255, 0, 42]
        let row = try database.transaction { db in
            let insert = try db.statement("INSERT INTO kv (k, v, n, x) VALUES (?, ?, ?, ?)")
            try insert.bind("clé\u{0}with nul", at: 1)
            try insert.bind(blob, at: 2)
            try insert.bind(Int64.min, at: 3)
            try insert.bind(-0.125, at: 4)
            try insert.run()
            let select = try db.statement("SELECT k, v, n, x FROM kv")
            #expect(try select.step())
            let values = (0..<select.columnCount).map { select.value(at: $0) }
            #expect(try !select.step())
            return values
        }
        #expect(row == [.text("clé\u{0}with nul"), .blob(blob), .integer(Int64.min), .real(-0.125)])
    }

    @Test func emptyBlobAndEmptyTextAreNotNull() throws {
        let database = try Database.inMemory()
        try database.migrate(keyValueSchema)
        let (blob, key, blobIsNull, nullColumnIsNull) = try database.withConnection { db in
            let insert = try db.statement("INSERT INTO kv (k, v) VALUES (?, ?)")
            try insert.bind("", at: 1)
            try insert.bind([UInt8](), at: 2)
            try insert.run()
            let select = try db.statement("SELECT k, v, n FROM kv")
            #expect(try select.step())
            return (select.blob(at: 1), select.string(at: 0), select.isNull(at: 1), select.isNull(at: 2))
        }
        #expect(blob == [])
        #expect(key == "")
        #expect(!blobIsNull)
        #expect(nullColumnIsNull)
    }

    @Test func nullBindsAndReadsAsNil() throws {
        let database = try Database.inMemory()
        try database.migrate(keyValueSchema)
        let (blob, value) = try database.withConnection { db in
            let insert = try db.statement("INSERT INTO kv (k, v, n) VALUES (?1, ?2, ?3)")
            try insert.bind([.text("a"), .null, .null])
            try insert.run()
            let select = try db.statement("SELECT v, n FROM kv WHERE k = ?")
            try select.bind("a", at: 1)
            #expect(try select.step())
            return (select.blob(at: 0), select.value(at: 1))
        }
        #expect(blob == nil)
        #expect(value == .null)
    }

    @Test func largeBlobRoundTripsThroughAFile() throws {
        let file = TemporaryDatabaseFile()
        defer { file.cleanUp() }
        let blob = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        do {
            let database = try Database(path: file.path)
            try database.migrate(keyValueSchema)
            try database.withConnection { db in
                let insert = try db.statement("INSERT INTO kv (k, v) VALUES ('big', ?)")
                try insert.bind(blob, at: 1)
                try insert.run()
            }
        }
        let reopened = try Database(path: file.path)
        let read = try reopened.withConnection { db in
            let select = try db.statement("SELECT v FROM kv WHERE k = 'big'")
            #expect(try select.step())
            return select.blob(at: 0)
        }
        #expect(read == blob)
    }

    @Test func fileDatabaseUsesWriteAheadLogAndNormalSync() throws {
        let file = TemporaryDatabaseFile()
        defer { file.cleanUp() }
        let database = try Database(path: file.path)
        let (mode, sync) = try database.withConnection { db in
            let journal = try db.statement("PRAGMA journal_mode")
            #expect(try journal.step())
            let mode = journal.string(at: 0)
            let synchronous = try db.statement("PRAGMA synchronous")
            #expect(try synchronous.step())
            return (mode, synchronous.int64(at: 0))
        }
        #expect(mode == "wal")
        #expect(sync == 1)  // NORMAL
    }

    @Test func pageSizeAppliesToANewFileInWriteAheadLogModeAndAnExistingFileKeepsItsOwn() throws {
        let file = TemporaryDatabaseFile()
        defer { file.cleanUp() }
        func pageSize(_ database: Database) throws -> Int64 {
            try database.withConnection { db in
                let statement = try db.statement("PRAGMA page_size")
                #expect(try statement.step())
                return statement.int64(at: 0)
            }
        }
        let created = try Database(path: file.path, configuration: Database.Configuration(pageSize: 8192))
        try created.migrate(keyValueSchema)
        #expect(try pageSize(created) == 8192)
        let reopened = try Database(path: file.path, configuration: Database.Configuration(pageSize: 16384))
        #expect(try pageSize(reopened) == 8192)
        let mode = try reopened.withConnection { db in
            let journal = try db.statement("PRAGMA journal_mode")
            #expect(try journal.step())
            return journal.string(at: 0)
        }
        #expect(mode == "wal")
    }

    @Test func transactionCommitsWhenTheBodyReturns() throws {
        let database = try Database.inMemory()
        try database.migrate(keyValueSchema)
        try database.transaction { db in
            let insert = try db.statement("INSERT INTO kv (k, n) VALUES (?, ?)")
            for index in 0..<10 {
                try insert.bind("key\(index)", at: 1)
                try insert.bind(index, at: 2)
                try insert.run()
            }
        }
        #expect(try count(database) == 10)
    }

    @Test func transactionRollsBackWhenTheBodyThrows() throws {
        struct Abort: Error {}
        let database = try Database.inMemory()
        try database.migrate(keyValueSchema)
        try database.execute("INSERT INTO kv (k) VALUES ('kept')")
        #expect(throws: Abort.self) {
            try database.transaction { db in
                try db.execute("INSERT INTO kv (k) VALUES ('discarded')")
                throw Abort()
            }
        }
        #expect(try count(database) == 1)
        let inTransaction = try database.withConnection { $0.isInTransaction }
        #expect(!inTransaction)
    }

    @Test func nestedTransactionRollsBackOnlyItsOwnWork() throws {
        struct Abort: Error {}
        let database = try Database.inMemory()
        try database.migrate(keyValueSchema)
        try database.transaction { db in
            try db.execute("INSERT INTO kv (k) VALUES ('outer')")
            do {
                try db.transaction { inner in
                    try inner.execute("INSERT INTO kv (k) VALUES ('inner')")
                    throw Abort()
                }
            } catch is Abort {}
        }
        let keys = try database.withConnection { db in
            let select = try db.statement("SELECT k FROM kv ORDER BY k")
            var keys: [String] = []
            while try select.step() { keys.append(select.string(at: 0) ?? "") }
            return keys
        }
        #expect(keys == ["outer"])
    }

    @Test func constraintViolationIsATypedErrorWithTheSQLiteCode() throws {
        let database = try Database.inMemory()
        try database.migrate(keyValueSchema)
        try database.execute("INSERT INTO kv (k) VALUES ('a')")
        let error = #expect(throws: StorageError.self) {
            try database.execute("INSERT INTO kv (k) VALUES ('a')")
        }
        #expect(error?.isConstraintViolation == true)
        #expect(error?.code == SQLITE_CONSTRAINT | (6 << 8))  // SQLITE_CONSTRAINT_PRIMARYKEY
        #expect(error?.isRetryable == false)
    }

    @Test func badSQLIsATypedError() throws {
        let database = try Database.inMemory()
        let error = #expect(throws: StorageError.self) {
            try database.withConnection { db in _ = try db.statement("SELEC nonsense") }
        }
        #expect(error?.primaryCode == SQLITE_ERROR)
        #expect(error?.sql == "SELEC nonsense")
    }

    @Test func openingAnImpossiblePathFails() {
        #expect(throws: StorageError.self) {
            try Database(path: "/nonexistent-directory/for/sure/db.sqlite")
        }
    }

    @Test func upsertsUpdateExistingRows() throws {
        let database = try Database.inMemory()
        try database.migrate(keyValueSchema)
        try database.transaction { db in
            let upsert = try db.statement(
                "INSERT INTO kv (k, n) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET n = excluded.n")
            for round in 0..<3 {
                for key in 0..<5 {
                    try upsert.bind("k\(key)", at: 1)
                    try upsert.bind(Int64(round * 100 + key), at: 2)
                    try upsert.run()
                }
            }
        }
        #expect(try count(database) == 5)
        let total = try database.withConnection { db in
            let sum = try db.statement("SELECT sum(n) FROM kv")
            #expect(try sum.step())
            return sum.int64(at: 0)
        }
        #expect(total == 200 * 5 + (0 + 1 + 2 + 3 + 4))
    }
}

@Suite struct MigrationTests {
    @Test func migrationsRunOnceAndInOrder() throws {
        let file = TemporaryDatabaseFile()
        defer { file.cleanUp() }
        let migrations = [
            Migration("create", sql: "CREATE TABLE t (a INTEGER)"),
            Migration("seed") { db in try db.execute("INSERT INTO t (a) VALUES (1)") },
        ]
        do {
            let database = try Database(path: file.path)
            #expect(try database.migrate(migrations) == 2)
            #expect(try database.userVersion() == 2)
            #expect(try database.migrate(migrations) == 0)
        }
        let reopened = try Database(path: file.path)
        #expect(try reopened.migrate(migrations) == 0)
        #expect(try count(reopened, "t") == 1)

        let extended = migrations + [Migration("seed more", sql: "INSERT INTO t (a) VALUES (2)")]
        #expect(try reopened.migrate(extended) == 1)
        #expect(try reopened.userVersion() == 3)
        #expect(try count(reopened, "t") == 2)
    }

    @Test func failingMigrationLeavesNoTraceAndNamesItself() throws {
        let database = try Database.inMemory()
        let migrations = [
            Migration("create", sql: "CREATE TABLE t (a INTEGER)"),
            Migration("broken", sql: "INSERT INTO t (a) VALUES (1); INSERT INTO missing VALUES (2)"),
        ]
        let error = #expect(throws: StorageError.self) { try database.migrate(migrations) }
        #expect(error?.reason.contains("migration 2 (broken)") == true)
        #expect(try database.userVersion() == 1)
        #expect(try count(database, "t") == 0)
    }

    @Test func databaseFromANewerBuildIsRefused() throws {
        let database = try Database.inMemory()
        try database.execute("PRAGMA user_version = 5")
        #expect(throws: StorageError.self) { try database.migrate(keyValueSchema) }
    }
}

@Suite struct ConcurrencyTests {
    @Test func concurrentWritersAreSerialized() async throws {
        let database = try Database.inMemory()
        try database.migrate([Migration("create", sql: "CREATE TABLE t (writer INTEGER, i INTEGER)")])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    for index in 0..<50 {
                        try database.transaction { db in
                            let insert = try db.statement("INSERT INTO t (writer, i) VALUES (?, ?)")
                            try insert.bind(writer, at: 1)
                            try insert.bind(index, at: 2)
                            try insert.run()
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(try count(database, "t") == 200)
    }
}

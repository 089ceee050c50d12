import CSQLite

/// An open SQLite connection, handed out by ``Database`` for the duration of one closure.
///
/// Not `Sendable` and valid only inside the closure that received it. It caches one prepared
/// ``Statement`` per SQL text for its whole life, so a service's fixed set of queries is compiled
/// once.
public final class Connection {
    let handle: OpaquePointer
    private var statements: [String: Statement] = [:]

    init(path: String, configuration: Database.Configuration) throws(StorageError) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let code = sqlite3_open_v2(path, &handle, flags, nil)
        guard code == SQLITE_OK, let handle else {
            let error = StorageError.from(handle, code: code, context: "cannot open \(path)")
            sqlite3_close_v2(handle)
            throw error
        }
        self.handle = handle
        sqlite3_extended_result_codes(handle, 1)
        sqlite3_busy_timeout(handle, configuration.busyTimeoutMilliseconds)
        // Before the journal mode: a file in WAL mode cannot change its page size.
        if let pageSize = configuration.pageSize {
            try execute("PRAGMA page_size=\(pageSize)")
        }
        if path != ":memory:" {
            try execute("PRAGMA journal_mode=\(configuration.journalMode.rawValue)")
        }
        try execute("PRAGMA synchronous=\(configuration.synchronous.rawValue)")
        try execute("PRAGMA foreign_keys=\(configuration.foreignKeys ? "ON" : "OFF")")
    }

    deinit {
        statements.removeAll()
        sqlite3_close_v2(handle)
    }

    /// Runs one or more SQL statements separated by semicolons, discarding any rows.
    public func execute(_ sql: String) throws(StorageError) {
        var message: UnsafeMutablePointer<CChar>?
        let code = sqlite3_exec(handle, sql, nil, nil, &message)
        guard code == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(code))
            sqlite3_free(message)
            throw StorageError(code: sqlite3_extended_errcode(handle), reason: text, sql: sql)
        }
    }

    /// The prepared statement for `sql`, compiled on first use and reused afterwards; it comes
    /// back reset with its parameters cleared.
    public func statement(_ sql: String) throws(StorageError) -> Statement {
        if let cached = statements[sql] {
            cached.reset()
            return cached
        }
        let statement = try Statement(connection: handle, sql: sql)
        statements[sql] = statement
        return statement
    }

    /// Rows changed by the most recent INSERT, UPDATE or DELETE.
    public var changes: Int { Int(sqlite3_changes64(handle)) }

    /// The rowid of the most recent successful INSERT.
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// Whether a transaction is open on this connection.
    public var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Runs `body` in a transaction: `BEGIN IMMEDIATE` at the outermost level (the write lock is
    /// taken up front, so the transaction cannot fail half-way with `SQLITE_BUSY` on upgrade), a
    /// savepoint when nested. Commits if `body` returns; rolls back and rethrows if it throws.
    public func transaction<T>(_ body: (Connection) throws -> T) throws -> T {
        if isInTransaction {
            try execute("SAVEPOINT nested")
            do {
                let result = try body(self)
                try execute("RELEASE nested")
                return result
            } catch {
                try? execute("ROLLBACK TO nested")
                try? execute("RELEASE nested")
                throw error
            }
        }
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body(self)
            try execute("COMMIT")
            return result
        } catch {
            if isInTransaction { try? execute("ROLLBACK") }
            throw error
        }
    }

    /// `PRAGMA user_version`.
    public func userVersion() throws(StorageError) -> Int {
        let statement = try statement("PRAGMA user_version")
        defer { statement.reset() }
        guard try statement.step() else { return 0 }
        return Int(statement.int64(at: 0))
    }

    func migrate(_ migrations: [Migration]) throws -> Int {
        let current = try userVersion()
        guard current <= migrations.count else {
            throw StorageError(
                code: SQLITE_ERROR,
                reason: "database schema version \(current) is newer than this build knows (\(migrations.count))")
        }
        for (offset, migration) in migrations.enumerated().dropFirst(current) {
            let version = offset + 1
            do {
                try transaction { connection in
                    try migration.apply(connection)
                    try connection.execute("PRAGMA user_version = \(version)")
                }
            } catch let error as StorageError {
                throw StorageError(
                    code: error.code, reason: "migration \(version) (\(migration.name)) failed: \(error.reason)",
                    sql: error.sql)
            }
        }
        return migrations.count - current
    }
}

import CSQLite
import Synchronization

/// One SQLite database: a file (or an in-memory database) behind one connection.
///
/// ## Thread safety
/// A `Database` is `Sendable`: its single connection is guarded by a `Mutex`, and every call
/// (``execute(_:)``, ``withConnection(_:)``, ``transaction(_:)``, ``migrate(_:)``) holds the lock for
/// its whole duration. The ``Connection`` and ``Statement`` handed to a closure are not `Sendable`
/// and are valid only inside that closure. The lock is not reentrant: inside a closure, use the
/// connection it gave you (``Connection/transaction(_:)`` nests as a savepoint), never the
/// `Database` again. The intended use is one `Database` per stateful component, driven from one
/// actor or serial context; the lock makes sharing it safe, not concurrent.
///
/// ## Performance
/// Statements are prepared once per SQL text and reused (``Connection/statement(_:)``). Batch writes
/// belong in one ``transaction(_:)``: with WAL and `synchronous=NORMAL`, a transaction costs one
/// log append, not one `fsync` per row.
public final class Database: Sendable {
    /// The file path, or `:memory:`.
    public let path: String
    /// Touched only while `lock` is held, which is what makes the type `Sendable`.
    private nonisolated(unsafe) let connection: Connection
    private let lock = Mutex(())

    /// Opens (creating if needed) the database file at `path` and applies `configuration`.
    public init(path: String, configuration: Configuration = Configuration()) throws(StorageError) {
        self.path = path
        let connection = try Connection(path: path, configuration: configuration)
        self.connection = connection
    }

    /// A private in-memory database, gone when the value is released. Handy in tests.
    public static func inMemory(configuration: Configuration = Configuration()) throws(StorageError) -> Database {
        try Database(path: ":memory:", configuration: configuration)
    }

    /// Runs one or more SQL statements separated by semicolons, discarding any rows.
    public func execute(_ sql: String) throws(StorageError) {
        try lock.withLock { _ throws(StorageError) in try connection.execute(sql) }
    }

    /// Runs `body` with exclusive use of the connection, outside any transaction (each statement
    /// commits on its own unless `body` opens a transaction).
    public func withConnection<T: Sendable>(_ body: (Connection) throws -> T) throws -> T {
        try lock.withLock { _ in try body(connection) }
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction: commits if it returns, rolls back and
    /// rethrows if it throws.
    public func transaction<T: Sendable>(_ body: (Connection) throws -> T) throws -> T {
        try lock.withLock { _ in try connection.transaction(body) }
    }

    /// Brings the schema up to date: runs, in order and each in its own transaction, the
    /// migrations past the database's `user_version`, then sets `user_version` to their number.
    ///
    /// Migration `i` (1-based) runs exactly once over the life of the file. A database whose
    /// `user_version` is larger than `migrations.count` was written by a newer build and is refused.
    /// - Returns: How many migrations ran.
    @discardableResult
    public func migrate(_ migrations: [Migration]) throws -> Int {
        try lock.withLock { _ in try connection.migrate(migrations) }
    }

    /// The schema version recorded in the file (`PRAGMA user_version`).
    public func userVersion() throws(StorageError) -> Int {
        try lock.withLock { _ throws(StorageError) in try connection.userVersion() }
    }
}

// MARK: - Configuration

extension Database {
    /// How a connection is set up when it opens.
    public struct Configuration: Sendable, Equatable {
        /// SQLite's journal modes that make sense here.
        public enum JournalMode: String, Sendable {
            /// Write-ahead log: readers never block the writer, commits append to the log.
            case wal = "WAL"
            /// The classic rollback journal.
            case delete = "DELETE"
        }

        /// How often SQLite waits for the disk (`PRAGMA synchronous`).
        public enum Synchronous: String, Sendable {
            /// Never waits; a power loss can corrupt the file.
            case off = "OFF"
            /// With WAL: durable except for the last transactions before a power loss; never corrupt.
            case normal = "NORMAL"
            /// Waits at every commit.
            case full = "FULL"
        }

        /// The journal mode (in-memory databases ignore it). Default: WAL.
        public var journalMode: JournalMode
        /// The sync level. Default: NORMAL.
        public var synchronous: Synchronous
        /// How long a statement waits for a lock held by another connection before failing
        /// with a retryable `SQLITE_BUSY`. Default: 5 s.
        public var busyTimeout: Duration
        /// Whether foreign key constraints are enforced. Default: true.
        public var foreignKeys: Bool
        /// The page size in bytes (a power of two from 512 to 65536) of a database this connection
        /// creates; an existing file keeps its own. Default: `nil`, SQLite's (4096).
        public var pageSize: Int?

        /// Creates a configuration; every parameter has the default described on its property.
        public init(
            journalMode: JournalMode = .wal, synchronous: Synchronous = .normal,
            busyTimeout: Duration = .seconds(5), foreignKeys: Bool = true, pageSize: Int? = nil
        ) {
            self.journalMode = journalMode
            self.synchronous = synchronous
            self.busyTimeout = busyTimeout
            self.foreignKeys = foreignKeys
            self.pageSize = pageSize
        }

        var busyTimeoutMilliseconds: Int32 {
            let (seconds, attoseconds) = busyTimeout.components
            let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
            return Int32(clamping: max(0, milliseconds))
        }
    }
}

// MARK: - Migrations

/// One step of the schema's history. Migrations are identified by their position in the list
/// given to ``Database/migrate(_:)``: never reorder or edit a released one, only append.
public struct Migration: Sendable {
    /// A short description, used in error messages.
    public var name: String
    /// The work: runs inside the migration's transaction.
    public var apply: @Sendable (Connection) throws -> Void

    /// A migration that runs code.
    public init(_ name: String, apply: @escaping @Sendable (Connection) throws -> Void) {
        self.name = name
        self.apply = apply
    }

    /// A migration that runs SQL (one or more statements).
    public init(_ name: String, sql: String) {
        self.name = name
        self.apply = { connection in try connection.execute(sql) }
    }
}

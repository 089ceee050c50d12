import CSQLite

/// Every failure of the storage module: an SQLite result code, a human reason and whether trying
/// again can help.
///
/// Pattern-match on ``code`` (an SQLite result code, possibly extended, such as `SQLITE_CONSTRAINT`
/// or `SQLITE_BUSY`) or on the convenience properties.
public struct StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The SQLite result code (extended where SQLite reports one), e.g. `SQLITE_CONSTRAINT_UNIQUE`.
    public var code: Int32
    /// What went wrong, in words: SQLite's own message plus the context it happened in.
    public var reason: String
    /// The SQL text involved, if any.
    public var sql: String?

    /// Creates an error from a result code and a reason.
    public init(code: Int32, reason: String, sql: String? = nil) {
        self.code = code
        self.reason = reason
        self.sql = sql
    }

    /// The primary result code (the low byte of an extended code), e.g. `SQLITE_CONSTRAINT`.
    public var primaryCode: Int32 { code & 0xFF }

    /// Whether retrying the same operation later can succeed: the database was busy or locked.
    public var isRetryable: Bool { primaryCode == SQLITE_BUSY || primaryCode == SQLITE_LOCKED }

    /// Whether a constraint (unique, not null, check, foreign key) rejected the write.
    public var isConstraintViolation: Bool { primaryCode == SQLITE_CONSTRAINT }

    public var description: String {
        let name = String(cString: sqlite3_errstr(code))
        if let sql { return "storage error \(code) (\(name)): \(reason) [sql: \(sql)]" }
        return "storage error \(code) (\(name)): \(reason)"
    }
}

extension StorageError {
    /// An error carrying SQLite's current message for `handle`.
    static func from(_ handle: OpaquePointer?, code: Int32, context: String, sql: String? = nil) -> StorageError {
        let message = handle.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
            ?? String(cString: sqlite3_errstr(code))
        let extended = handle.map { sqlite3_extended_errcode($0) } ?? code
        return StorageError(code: extended == 0 ? code : extended, reason: "\(context): \(message)", sql: sql)
    }

    /// A misuse of the API (wrong column type, parameter out of range) reported without SQLite.
    static func misuse(_ reason: String, sql: String? = nil) -> StorageError {
        StorageError(code: SQLITE_MISUSE, reason: reason, sql: sql)
    }
}

import CSQLite

/// A value SQLite can store, for code that handles columns generically.
public enum SQLValue: Sendable, Hashable {
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
    case null
}

/// A prepared SQL statement, obtained from ``Connection/statement(_:)``.
///
/// Indices follow SQLite: **parameters are 1-based** (`?1`, `?2`, …; plain `?` counts from 1),
/// **result columns are 0-based**. Not `Sendable`; valid inside the closure that produced it.
///
/// ```swift
/// try database.transaction { db in
///     let upsert = try db.statement("INSERT INTO kv(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v")
///     for (key, value) in rows {
///         try upsert.bind(key, at: 1)
///         try upsert.bind(value, at: 2)
///         try upsert.run()
///     }
/// }
/// ```
public final class Statement {
    let handle: OpaquePointer
    /// The SQL text the statement was prepared from.
    public let sql: String

    init(connection: OpaquePointer, sql: String) throws(StorageError) {
        var handle: OpaquePointer?
        let code = sqlite3_prepare_v3(connection, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &handle, nil)
        guard code == SQLITE_OK else {
            sqlite3_finalize(handle)
            throw StorageError.from(connection, code: code, context: "cannot prepare", sql: sql)
        }
        guard let handle else { throw StorageError.misuse("the SQL text holds no statement", sql: sql) }
        self.handle = handle
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    // MARK: - Binding

    /// Binds an integer to parameter `index` (1-based).
    public func bind(_ value: Int64, at index: Int32) throws(StorageError) {
        try check(sqlite3_bind_int64(handle, index, value), "bind parameter \(index)")
    }

    /// Binds an integer to parameter `index` (1-based).
    public func bind(_ value: Int, at index: Int32) throws(StorageError) {
        try bind(Int64(value), at: index)
    }

    /// Binds a double to parameter `index` (1-based).
    public func bind(_ value: Double, at index: Int32) throws(StorageError) {
        try check(sqlite3_bind_double(handle, index, value), "bind parameter \(index)")
    }

    /// Binds UTF-8 text to parameter `index` (1-based). SQLite copies it.
    public func bind(_ value: String, at index: Int32) throws(StorageError) {
        var value = value
        let code = value.withUTF8 { utf8 in
            guard let base = utf8.baseAddress, !utf8.isEmpty else {
                return sqlite3_bind_text(handle, index, "", 0, Self.transient)
            }
            return base.withMemoryRebound(to: CChar.self, capacity: utf8.count) {
                sqlite3_bind_text64(handle, index, $0, sqlite3_uint64(utf8.count), Self.transient, UInt8(SQLITE_UTF8))
            }
        }
        try check(code, "bind parameter \(index)")
    }

    /// Binds bytes as a blob to parameter `index` (1-based). SQLite copies them; an empty array
    /// binds an empty blob, not NULL.
    public func bind(_ value: [UInt8], at index: Int32) throws(StorageError) {
        try check(value.withUnsafeBytes { bindBlob($0, at: index) }, "bind parameter \(index)")
    }

    /// Binds raw bytes as a blob to parameter `index` (1-based) without an intermediate array.
    /// SQLite copies them before returning.
    public func bind(bytes: UnsafeRawBufferPointer, at index: Int32) throws(StorageError) {
        try check(bindBlob(bytes, at: index), "bind parameter \(index)")
    }

    private func bindBlob(_ bytes: UnsafeRawBufferPointer, at index: Int32) -> Int32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return sqlite3_bind_zeroblob(handle, index, 0) }
        return sqlite3_bind_blob64(handle, index, base, sqlite3_uint64(bytes.count), Self.transient)
    }

    /// Binds SQL NULL to parameter `index` (1-based).
    public func bindNull(at index: Int32) throws(StorageError) {
        try check(sqlite3_bind_null(handle, index), "bind parameter \(index)")
    }

    /// Binds any ``SQLValue`` to parameter `index` (1-based).
    public func bind(_ value: SQLValue, at index: Int32) throws(StorageError) {
        switch value {
        case .integer(let value): try bind(value, at: index)
        case .real(let value): try bind(value, at: index)
        case .text(let value): try bind(value, at: index)
        case .blob(let value): try bind(value, at: index)
        case .null: try bindNull(at: index)
        }
    }

    /// Binds `values` to parameters 1, 2, … in order.
    public func bind(_ values: [SQLValue]) throws(StorageError) {
        for (offset, value) in values.enumerated() {
            try bind(value, at: Int32(offset + 1))
        }
    }

    // MARK: - Running

    /// Advances to the next row: `true` when a row is available to read, `false` when done.
    public func step() throws(StorageError) -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let code:
            let error = StorageError.from(sqlite3_db_handle(handle), code: code, context: "cannot run", sql: sql)
            sqlite3_reset(handle)
            throw error
        }
    }

    /// Runs the statement to completion (ignoring any rows) and resets it, keeping its bindings
    /// so a loop only rebinds what changes.
    public func run() throws(StorageError) {
        while try step() {}
        sqlite3_reset(handle)
    }

    /// Rewinds the statement and clears its bindings.
    public func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    // MARK: - Reading the current row

    /// The number of columns in a result row.
    public var columnCount: Int32 { sqlite3_column_count(handle) }

    /// Whether column `index` (0-based) of the current row is NULL.
    public func isNull(at index: Int32) -> Bool { sqlite3_column_type(handle, index) == SQLITE_NULL }

    /// Column `index` (0-based) as an integer (NULL reads as 0).
    public func int64(at index: Int32) -> Int64 { sqlite3_column_int64(handle, index) }

    /// Column `index` (0-based) as a double (NULL reads as 0).
    public func double(at index: Int32) -> Double { sqlite3_column_double(handle, index) }

    /// Column `index` (0-based) as text, or `nil` when NULL.
    public func string(at index: Int32) -> String? {
        guard let text = sqlite3_column_text(handle, index) else { return nil }
        let count = Int(sqlite3_column_bytes(handle, index))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    /// Column `index` (0-based) as bytes, or `nil` when NULL.
    public func blob(at index: Int32) -> [UInt8]? {
        withBlob(at: index) { bytes in bytes.map { Array($0) } }
    }

    /// Lends column `index` (0-based) as raw bytes (`nil` when NULL) without copying; the
    /// buffer is valid only inside `body`.
    public func withBlob<R>(at index: Int32, _ body: (UnsafeRawBufferPointer?) throws -> R) rethrows -> R {
        if sqlite3_column_type(handle, index) == SQLITE_NULL { return try body(nil) }
        let base = sqlite3_column_blob(handle, index)
        let count = Int(sqlite3_column_bytes(handle, index))
        return try body(UnsafeRawBufferPointer(start: count == 0 ? nil : base, count: count))
    }

    /// Column `index` (0-based) as whatever SQLite stored.
    public func value(at index: Int32) -> SQLValue {
        switch sqlite3_column_type(handle, index) {
        case SQLITE_INTEGER: .integer(int64(at: index))
        case SQLITE_FLOAT: .real(double(at: index))
        case SQLITE_TEXT: .text(string(at: index) ?? "")
        case SQLITE_BLOB: .blob(blob(at: index) ?? [])
        default: .null
        }
    }

    // MARK: - Helpers

    private static var transient: sqlite3_destructor_type {
        unsafeBitCast(-1 as Int, to: sqlite3_destructor_type.self)
    }

    /// Throws for a result other than `SQLITE_OK`; `context` is only built then (binds are hot).
    private func check(_ code: Int32, _ context: @autoclosure () -> String) throws(StorageError) {
        guard code == SQLITE_OK else {
            throw StorageError.from(sqlite3_db_handle(handle), code: code, context: "cannot \(context())", sql: sql)
        }
    }
}

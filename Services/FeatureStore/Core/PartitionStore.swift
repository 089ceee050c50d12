import Features
import Foundation
import Storage

/// Where one partition's processing stands, as stored with its state.
struct PartitionProgress: Sendable, Equatable {
    /// The next input offset to read, or `nil` before any batch was applied.
    var inputNext: Int64?
    /// Changes made by batches ending at or before this input offset are acknowledged in the changelog.
    var ackedThrough: Int64
    /// The next changelog offset this state already reflects (restores read from there).
    var changelogNext: Int64
}

/// One entity's state to write: its id, encoded record and latest event time (ms).
struct EntityChange: Sendable {
    var entity: String
    var bytes: [UInt8]
    var latestMillis: Int64?
}

/// The SQLite state of one input partition: entity → encoded ``EntityFeatureState``, the
/// point-in-time history and the progress row, so the input offset is committed in the same
/// transaction as the state it produced.
///
/// Writes go through one connection (driven by the processor), reads through another: with WAL,
/// HTTP reads never wait for a batch being written.
final class PartitionStore: Sendable {
    let partition: Int32
    let path: String
    private let writer: Database
    private let reader: Database
    private let historyIntervalMillis: Int64

    static let migrations: [Migration] = [
        Migration("feature state, history and progress", sql: """
            CREATE TABLE entities(entity TEXT PRIMARY KEY, state BLOB NOT NULL, changed_at INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE history(entity TEXT NOT NULL, slot INTEGER NOT NULL, latest INTEGER NOT NULL, state BLOB NOT NULL,
                                 PRIMARY KEY(entity, slot)) WITHOUT ROWID;
            CREATE TABLE progress(id INTEGER PRIMARY KEY CHECK (id = 1), input_next INTEGER NOT NULL,
                                  acked_through INTEGER NOT NULL, changelog_next INTEGER NOT NULL);
            INSERT INTO progress VALUES (1, -1, -1, 0);
            """),
    ]

    /// The writer keeps hot pages in a 64 MiB cache and caps the write-ahead log at 16 MiB once
    /// it is checkpointed, so the file on disk stays near the size of the state. It checkpoints
    /// once the log holds 2048 pages (16 MiB) rather than SQLite's 1000 (8 MiB here): a batch that
    /// changes entities all over the table writes most pages to the log, and checkpointing after
    /// every such batch would copy each of them into the database once per batch instead of once
    /// per several.
    static let writerPragmas =
        "PRAGMA cache_size=-65536; PRAGMA mmap_size=1073741824; PRAGMA journal_size_limit=16777216; PRAGMA wal_autocheckpoint=2048"
    /// Pages of a new partition's file: a batch changes rows spread over most pages, and 8 KiB
    /// pages make half as many pages (B-tree searches, log frames and page-cache lookups) to write
    /// the same rows as SQLite's 4 KiB. Files created with another size keep it.
    static let pageSize = 8192
    /// Readers map the file, so a point lookup costs no read system call.
    static let readerPragmas = "PRAGMA cache_size=-16384; PRAGMA mmap_size=1073741824"

    /// Opens (creating and migrating) the state of `partition` under `directory`.
    init(directory: String, partition: Int32, historyInterval: Double) throws(FeatureStoreError) {
        self.partition = partition
        self.path = directory + "/partition-\(partition).sqlite"
        self.historyIntervalMillis = max(1, Int64((historyInterval * 1000).rounded()))
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            writer = try Database(path: path, configuration: Database.Configuration(pageSize: Self.pageSize))
            try writer.migrate(Self.migrations)
            try writer.execute(Self.writerPragmas)
            reader = try Database(path: path)
            try reader.execute(Self.readerPragmas)
        } catch {
            throw FeatureStoreError(.storage, "cannot open the state of partition \(partition) at \(path): \(error)")
        }
    }

    // MARK: - Progress

    /// The committed progress. Read through the reader connection: polling it (as tests and the
    /// bench do) never waits for a batch's transaction on the writer, nor holds one up.
    func progress() throws(FeatureStoreError) -> PartitionProgress {
        try storage("read progress") {
            try reader.withConnection { db in
                let statement = try db.statement("SELECT input_next, acked_through, changelog_next FROM progress WHERE id = 1")
                defer { statement.reset() }
                guard try statement.step() else { return PartitionProgress(inputNext: nil, ackedThrough: -1, changelogNext: 0) }
                let next = statement.int64(at: 0)
                return PartitionProgress(
                    inputNext: next < 0 ? nil : next, ackedThrough: statement.int64(at: 1), changelogNext: statement.int64(at: 2))
            }
        }
    }

    /// Records that the changelog acknowledged every change up to input offset `through`, and
    /// that it reflects changelog records before `changelogNext`.
    func recordAcknowledged(through: Int64, changelogNext: Int64?) throws(FeatureStoreError) {
        try storage("record acknowledged changes") {
            try writer.transaction { db in
                let statement = try db.statement(
                    "UPDATE progress SET acked_through = max(acked_through, ?1), changelog_next = max(changelog_next, ?2) WHERE id = 1")
                try statement.bind(through, at: 1)
                try statement.bind(changelogNext ?? 0, at: 2)
                try statement.run()
            }
        }
    }

    // MARK: - Batches

    /// Calls `body` with the position in `entities` and the stored record of each entity that has
    /// one, straight from SQLite's row (the bytes are valid only during the call). One
    /// transaction for all of them, so SQLite takes its locks once, not per entity.
    func withRecords(
        of entities: [String], _ body: (Int, UnsafeRawBufferPointer) -> Void
    ) throws(FeatureStoreError) {
        guard !entities.isEmpty else { return }
        try storage("load entity states") {
            try writer.transaction { db in
                let statement = try db.statement("SELECT state FROM entities WHERE entity = ?1")
                defer { statement.reset() }
                for (index, entity) in entities.enumerated() {
                    statement.reset()
                    try statement.bind(entity, at: 1)
                    guard try statement.step() else { continue }
                    statement.withBlob(at: 0) { bytes in body(index, bytes ?? UnsafeRawBufferPointer(start: nil, count: 0)) }
                }
            }
        }
    }

    /// Writes a batch's changed states, the history snapshots it took (see ``snapshot(_:atOrBefore:)``)
    /// and the next input offset in one transaction: one upsert per changed entity, whatever
    /// number of events the batch applied to it.
    func commit(_ changes: [EntityChange], snapshots: [EntityChange] = [], inputNext: Int64) throws(FeatureStoreError) {
        let interval = historyIntervalMillis
        try storage("commit a batch") {
            try writer.transaction { db in
                try Self.writeHistory(snapshots, historyInterval: interval, db)
                try Self.write(changes, changedAt: inputNext, db)
                let progress = try db.statement("UPDATE progress SET input_next = max(input_next, ?1) WHERE id = 1")
                try progress.bind(inputNext, at: 1)
                try progress.run()
            }
        }
    }

    /// Writes states that did not come through the input (benchmarks and tools seeding a store):
    /// they count as published and leave the offsets alone.
    func seed(_ states: [EntityChange]) throws(FeatureStoreError) {
        try storage("seed entity states") {
            try writer.transaction { db in try Self.write(states, changedAt: -1, db) }
        }
    }

    /// Updates each entity's row, inserting the rows of entities that have none: most changes are
    /// to known entities, and a plain update finds its row with one B-tree search where an upsert
    /// takes two.
    private static func write(_ changes: [EntityChange], changedAt: Int64, _ db: Connection) throws {
        let update = try db.statement("UPDATE entities SET state = ?2, changed_at = ?3 WHERE entity = ?1")
        let insert = try db.statement("INSERT INTO entities(entity, state, changed_at) VALUES (?1, ?2, ?3)")
        try update.bind(changedAt, at: 3)
        try insert.bind(changedAt, at: 3)
        for change in changes {
            try update.bind(change.entity, at: 1)
            try update.bind(change.bytes, at: 2)
            try update.run()
            guard db.changes == 0 else { continue }
            try insert.bind(change.entity, at: 1)
            try insert.bind(change.bytes, at: 2)
            try insert.run()
        }
    }

    private static func writeHistory(_ snapshots: [EntityChange], historyInterval: Int64, _ db: Connection) throws {
        guard !snapshots.isEmpty else { return }
        let history = try db.statement(
            "INSERT INTO history(entity, slot, latest, state) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(entity, slot) DO UPDATE SET latest = excluded.latest, state = excluded.state")
        for snapshot in snapshots {
            guard let latest = snapshot.latestMillis else { continue }
            try history.bind(snapshot.entity, at: 1)
            try history.bind(floorDivide(latest, historyInterval), at: 2)
            try history.bind(latest, at: 3)
            try history.bind(snapshot.bytes, at: 4)
            try history.run()
        }
    }

    /// The history slot of an event time in ms.
    func historySlot(_ millis: Int64) -> Int64 { floorDivide(millis, historyIntervalMillis) }

    /// The entities changed by batches whose publication was not acknowledged, to publish again.
    func unpublished() throws(FeatureStoreError) -> [(entity: String, bytes: [UInt8])] {
        try storage("read unpublished changes") {
            try writer.withConnection { db in
                let statement = try db.statement(
                    "SELECT entity, state FROM entities WHERE changed_at > (SELECT acked_through FROM progress WHERE id = 1)")
                defer { statement.reset() }
                var rows: [(entity: String, bytes: [UInt8])] = []
                while try statement.step() {
                    rows.append((statement.string(at: 0) ?? "", statement.blob(at: 1) ?? []))
                }
                return rows
            }
        }
    }

    // MARK: - Restore

    /// Applies what the changelog holds beyond the local state.
    ///
    /// When the changelog is ahead (`inputNext` beyond the local input offset), its records
    /// replace the local ones and processing resumes from `inputNext`. Otherwise the local state is
    /// at least as far, and the entities the changelog mentions are marked unpublished so this
    /// instance's (later) states are written after them.
    func restore(
        _ changes: [EntityChange], inputNext: Int64?, changelogNext: Int64
    ) throws(FeatureStoreError) -> (resumeAt: Int64?, replacedLocal: Bool) {
        try storage("restore from the changelog") {
            try writer.transaction { db in
                let read = try db.statement("SELECT input_next FROM progress WHERE id = 1")
                _ = try read.step()
                let localNext = read.int64(at: 0)
                read.reset()
                if localNext < 0 || (inputNext ?? -1) > localNext {
                    let resume = inputNext ?? localNext
                    try Self.write(changes, changedAt: max(resume, 0), db)
                    let progress = try db.statement(
                        "UPDATE progress SET input_next = ?1, acked_through = ?1, changelog_next = max(changelog_next, ?2) WHERE id = 1")
                    try progress.bind(resume, at: 1)
                    try progress.bind(changelogNext, at: 2)
                    try progress.run()
                    return (resume >= 0 ? resume : nil, true)
                }
                if !changes.isEmpty {
                    let mark = try db.statement("UPDATE entities SET changed_at = ?1 WHERE entity = ?2")
                    try mark.bind(localNext, at: 1)
                    for change in changes {
                        try mark.bind(change.entity, at: 2)
                        try mark.run()
                    }
                    let unacknowledge = try db.statement("UPDATE progress SET acked_through = min(acked_through, ?1) WHERE id = 1")
                    try unacknowledge.bind(localNext - 1, at: 1)
                    try unacknowledge.run()
                }
                let progress = try db.statement("UPDATE progress SET changelog_next = max(changelog_next, ?1) WHERE id = 1")
                try progress.bind(changelogNext, at: 1)
                try progress.run()
                return (localNext, false)
            }
        }
    }

    // MARK: - Reads

    /// The current record of `entity`, or `nil` when this partition does not hold it.
    func current(_ entity: String) throws(FeatureStoreError) -> [UInt8]? {
        try storage("read an entity") {
            try reader.withConnection { db in
                let statement = try db.statement("SELECT state FROM entities WHERE entity = ?1")
                defer { statement.reset() }
                try statement.bind(entity, at: 1)
                return try statement.step() ? statement.blob(at: 0) : nil
            }
        }
    }

    /// The newest history snapshot of `entity` whose latest event time is at or before `millis`.
    ///
    /// A snapshot is taken when an event moves an entity's latest event time into a later
    /// history interval (`floor(time / historyInterval)`): it is the state just before that event,
    /// i.e. after the last event of the earlier interval. So there is at most one per entity per
    /// interval, none for intervals without events, and none for the current interval (the
    /// current state answers for times at or after its latest event).
    func snapshot(_ entity: String, atOrBefore millis: Int64) throws(FeatureStoreError) -> [UInt8]? {
        let slot = floorDivide(millis, historyIntervalMillis)
        return try storage("read entity history") {
            try reader.withConnection { db in
                let statement = try db.statement(
                    "SELECT latest, state FROM history WHERE entity = ?1 AND slot <= ?2 ORDER BY slot DESC LIMIT 2")
                defer { statement.reset() }
                try statement.bind(entity, at: 1)
                try statement.bind(slot, at: 2)
                while try statement.step() {
                    if statement.int64(at: 0) <= millis { return statement.blob(at: 1) }
                }
                return nil
            }
        }
    }

    /// How many entities the partition holds.
    func entityCount() throws(FeatureStoreError) -> Int {
        try storage("count entities") {
            try reader.withConnection { db in
                let statement = try db.statement("SELECT count(*) FROM entities")
                defer { statement.reset() }
                return try statement.step() ? Int(statement.int64(at: 0)) : 0
            }
        }
    }

    /// Bytes of the database file and its write-ahead log.
    func sizeOnDisk() -> Int64 {
        [path, path + "-wal"].reduce(0) { total, file in
            let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.int64Value ?? 0
            return total + size
        }
    }

    /// Deletes history snapshots whose latest event time is before `millis`.
    func pruneHistory(before millis: Int64) throws(FeatureStoreError) {
        let slot = floorDivide(millis, historyIntervalMillis)
        try storage("prune history") {
            try writer.transaction { db in
                let statement = try db.statement("DELETE FROM history WHERE slot < ?1")
                try statement.bind(slot, at: 1)
                try statement.run()
            }
        }
    }

    private func storage<T>(_ what: String, _ body: () throws -> T) throws(FeatureStoreError) -> T {
        do {
            return try body()
        } catch {
            throw FeatureStoreError(.storage, "cannot \(what) of partition \(partition): \(error)", isRetryable: true)
        }
    }
}

func floorDivide(_ value: Int64, _ divisor: Int64) -> Int64 {
    let quotient = value / divisor
    return (value % divisor != 0 && (value < 0) != (divisor < 0)) ? quotient - 1 : quotient
}

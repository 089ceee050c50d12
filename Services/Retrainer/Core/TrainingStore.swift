import Contracts
import Foundation
import Kafka
import Storage

/// A labeled example as the training store keeps it.
public struct StoredExample: Sendable, Equatable {
    public var requestId: String
    public var eventTimeMs: Int64
    public var label: Bool
    /// The served feature vector by name (`nil`: missing when served).
    public var features: [String: Double?]
    /// Where it was read from `loop.labeled`.
    public var partition: Int32
    public var offset: Int64

    public init(requestId: String, eventTimeMs: Int64, label: Bool, features: [String: Double?], partition: Int32, offset: Int64) {
        self.requestId = requestId
        self.eventTimeMs = eventTimeMs
        self.label = label
        self.features = features
        self.partition = partition
        self.offset = offset
    }
}

/// One record of `loop.labeled` handed to the store: the decoded example, or `nil` when the record
/// could not be read (its offset still advances, so it is not read again).
public struct IncomingLabel: Sendable {
    public var example: LabeledExample?
    public var partition: Int32
    public var offset: Int64

    public init(example: LabeledExample?, partition: Int32, offset: Int64) {
        self.example = example
        self.partition = partition
        self.offset = offset
    }
}

/// What ``TrainingStore/ingest(_:topic:triggers:nowMs:)`` did with a slice of records.
public struct IngestResult: Sendable, Equatable {
    /// How many records of the slice it consumed (stops right after the first one that fires a trigger).
    public var consumed: Int
    /// New examples stored.
    public var inserted: Int
    /// Examples whose requestId was already stored.
    public var duplicates: Int
    /// Records that could not be read.
    public var unreadable: Int
    /// The stream triggers the last consumed record fired (already stored as pending).
    public var fired: [Trigger]
}

/// The retrainer's SQLite store: labeled examples deduplicated by requestId with the offsets they
/// came from, the next offset per partition (stored in the same transaction as the rows, so a
/// restart resumes exactly after what is stored), the stream-trigger state, pending triggers,
/// handled alerts and a local index of the registry's versions.
public final class TrainingStore: Sendable {
    private let database: Database

    /// Opens (creating if needed) the store at `path` (`:memory:` for a private in-memory store).
    public init(path: String) throws(RetrainerError) {
        do {
            database = try Database(path: path)
            try database.migrate(Self.migrations)
        } catch {
            throw .storage(error)
        }
    }

    static let migrations: [Migration] = [
        Migration("training store", sql: """
            CREATE TABLE examples (
                request_id TEXT PRIMARY KEY,
                event_time_ms INTEGER NOT NULL,
                label INTEGER NOT NULL,
                features TEXT NOT NULL,
                source_partition INTEGER NOT NULL,
                source_offset INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX examples_by_time ON examples(event_time_ms, request_id);
            CREATE TABLE offsets (
                topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                PRIMARY KEY (topic, partition)
            );
            CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER);
            CREATE TABLE pending_triggers (
                id TEXT PRIMARY KEY, kind TEXT NOT NULL, reason TEXT NOT NULL, cutoff_ms INTEGER,
                requested_at_ms INTEGER NOT NULL, actor TEXT NOT NULL, sequence INTEGER NOT NULL
            );
            CREATE TABLE handled_alerts (alert_id TEXT PRIMARY KEY, event_time_ms INTEGER NOT NULL);
            CREATE TABLE versions (
                version INTEGER PRIMARY KEY, status TEXT NOT NULL, trigger TEXT NOT NULL,
                created_at_ms INTEGER NOT NULL, record TEXT NOT NULL
            );
            """),
        Migration("registry journal", sql: """
            CREATE TABLE registry_journal (id INTEGER PRIMARY KEY CHECK (id = 1), change TEXT NOT NULL);
            """),
    ]

    // MARK: - Offsets

    /// The next offset to read per partition of `topic`, as stored with the examples.
    public func nextOffsets(topic: String) throws(RetrainerError) -> [TopicPartition: Int64] {
        do {
            return try database.withConnection { db in
                let statement = try db.statement("SELECT partition, next_offset FROM offsets WHERE topic = ?")
                defer { statement.reset() }
                try statement.bind(topic, at: 1)
                var offsets: [TopicPartition: Int64] = [:]
                while try statement.step() {
                    offsets[TopicPartition(topic: topic, partition: Int32(statement.int64(at: 0)))] = statement.int64(at: 1)
                }
                return offsets
            }
        } catch {
            throw .storage(error)
        }
    }

    // MARK: - Examples

    /// Stores the records of `records` in order, in one transaction with their offsets and the
    /// stream-trigger state, until one fires a trigger: that record is the last consumed, and the
    /// fired triggers are stored as pending in the same transaction. Call again with the rest.
    public func ingest(
        _ records: ArraySlice<IncomingLabel>, topic: String, triggers: StreamTriggers, nowMs: Int64
    ) throws(RetrainerError) -> IngestResult {
        do {
            return try database.transaction { db in
                var state = try Self.readStreamState(db)
                var result = IngestResult(consumed: 0, inserted: 0, duplicates: 0, unreadable: 0, fired: [])
                var nextOffsets: [Int32: Int64] = [:]
                let insert = try db.statement("""
                    INSERT OR IGNORE INTO examples(request_id, event_time_ms, label, features, source_partition, source_offset)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """)
                for record in records {
                    result.consumed += 1
                    nextOffsets[record.partition] = max(nextOffsets[record.partition] ?? 0, record.offset + 1)
                    guard let example = record.example else {
                        result.unreadable += 1
                        continue
                    }
                    try insert.bind(example.requestId, at: 1)
                    try insert.bind(example.eventTimeMs, at: 2)
                    try insert.bind(example.label ? 1 : 0, at: 3)
                    try insert.bind(Self.encode(example.features), at: 4)
                    try insert.bind(Int64(record.partition), at: 5)
                    try insert.bind(record.offset, at: 6)
                    try insert.run()
                    guard db.changes == 1 else {
                        result.duplicates += 1
                        continue
                    }
                    result.inserted += 1
                    let fired = triggers.observe(eventTimeMs: example.eventTimeMs, state: &state, nowMs: nowMs)
                    if !fired.isEmpty {
                        result.fired = fired
                        break
                    }
                }
                insert.reset()
                let offsets = try db.statement("""
                    INSERT INTO offsets(topic, partition, next_offset) VALUES (?, ?, ?)
                    ON CONFLICT(topic, partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)
                    """)
                for (partition, next) in nextOffsets {
                    try offsets.bind(topic, at: 1)
                    try offsets.bind(Int64(partition), at: 2)
                    try offsets.bind(next, at: 3)
                    try offsets.run()
                }
                offsets.reset()
                try Self.writeStreamState(db, state)
                try Self.insertPending(db, result.fired)
                return result
            }
        } catch let error as RetrainerError {
            throw error
        } catch {
            throw .storage(error)
        }
    }

    /// The number of stored examples.
    public func exampleCount() throws(RetrainerError) -> Int {
        do {
            return try database.withConnection { db in
                let statement = try db.statement("SELECT count(*) FROM examples")
                defer { statement.reset() }
                _ = try statement.step()
                return Int(statement.int64(at: 0))
            }
        } catch {
            throw .storage(error)
        }
    }

    /// The training set, oldest first (ties by requestId): examples with event time before
    /// `cutoffMs` (all when `nil`), within `lastEventTimeMs` of the end (the cutoff, or the newest
    /// example), and at most the newest `lastExamples` of those.
    public func trainingExamples(
        cutoffMs: Int64?, lastExamples: Int?, lastEventTimeMs: Int64?
    ) throws(RetrainerError) -> [StoredExample] {
        do {
            return try database.withConnection { db in
                let end: Int64
                if let cutoffMs {
                    end = cutoffMs
                } else {
                    let newest = try db.statement("SELECT max(event_time_ms) FROM examples")
                    defer { newest.reset() }
                    _ = try newest.step()
                    guard !newest.isNull(at: 0) else { return [] }
                    end = newest.int64(at: 0) + 1
                }
                let start = lastEventTimeMs.map { end - $0 } ?? Int64.min
                let statement = try db.statement("""
                    SELECT request_id, event_time_ms, label, features, source_partition, source_offset FROM examples
                    WHERE event_time_ms < ? AND event_time_ms >= ?
                    ORDER BY event_time_ms DESC, request_id DESC LIMIT ?
                    """)
                defer { statement.reset() }
                try statement.bind(end, at: 1)
                try statement.bind(start, at: 2)
                try statement.bind(Int64(lastExamples ?? -1), at: 3)
                var examples: [StoredExample] = []
                while try statement.step() {
                    examples.append(StoredExample(
                        requestId: statement.string(at: 0) ?? "", eventTimeMs: statement.int64(at: 1),
                        label: statement.int64(at: 2) != 0, features: Self.decode(statement.string(at: 3) ?? "{}"),
                        partition: Int32(statement.int64(at: 4)), offset: statement.int64(at: 5)))
                }
                return examples.reversed()
            }
        } catch {
            throw .storage(error)
        }
    }

    // MARK: - Triggers and alerts

    /// Stores triggers as pending until a run covers them.
    public func addPendingTriggers(_ triggers: [Trigger]) throws(RetrainerError) {
        do {
            try database.transaction { db in try Self.insertPending(db, triggers) }
        } catch {
            throw .storage(error)
        }
    }

    /// Records an alert as handled and its trigger as pending, once: `false` when the alert was
    /// already handled (nothing is stored then).
    public func recordAlert(id alertId: String, eventTimeMs: Int64, trigger: Trigger) throws(RetrainerError) -> Bool {
        do {
            return try database.transaction { db in
                let insert = try db.statement("INSERT OR IGNORE INTO handled_alerts(alert_id, event_time_ms) VALUES (?, ?)")
                defer { insert.reset() }
                try insert.bind(alertId, at: 1)
                try insert.bind(eventTimeMs, at: 2)
                try insert.run()
                guard db.changes == 1 else { return false }
                try Self.insertPending(db, [trigger])
                return true
            }
        } catch {
            throw .storage(error)
        }
    }

    /// The pending triggers, in the order they were stored.
    public func pendingTriggers() throws(RetrainerError) -> [Trigger] {
        do {
            return try database.withConnection { db in
                let statement = try db.statement(
                    "SELECT id, kind, reason, cutoff_ms, requested_at_ms, actor FROM pending_triggers ORDER BY sequence")
                defer { statement.reset() }
                var triggers: [Trigger] = []
                while try statement.step() {
                    guard let kind = Trigger.Kind(rawValue: statement.string(at: 1) ?? "") else { continue }
                    triggers.append(Trigger(
                        id: statement.string(at: 0) ?? "", kind: kind, reason: statement.string(at: 2) ?? "",
                        cutoffEventTimeMs: statement.isNull(at: 3) ? nil : statement.int64(at: 3),
                        requestedAtMs: statement.int64(at: 4), actor: statement.string(at: 5) ?? "system"))
                }
                return triggers
            }
        } catch {
            throw .storage(error)
        }
    }

    /// Removes triggers a finished run covered.
    public func removePendingTriggers(ids: [String]) throws(RetrainerError) {
        do {
            try database.transaction { db in
                let delete = try db.statement("DELETE FROM pending_triggers WHERE id = ?")
                defer { delete.reset() }
                for id in ids {
                    try delete.bind(id, at: 1)
                    try delete.run()
                }
            }
        } catch {
            throw .storage(error)
        }
    }

    // MARK: - Registry index

    /// Adds or replaces the local index entry of a published version.
    public func indexVersions(_ records: [ModelVersionRecord]) throws(RetrainerError) {
        do {
            try database.transaction { db in
                let upsert = try db.statement("""
                    INSERT INTO versions(version, status, trigger, created_at_ms, record) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT(version) DO UPDATE SET status = excluded.status, record = excluded.record
                    """)
                defer { upsert.reset() }
                for record in records {
                    try upsert.bind(record.version, at: 1)
                    try upsert.bind(record.status.rawValue, at: 2)
                    try upsert.bind(record.trigger, at: 3)
                    try upsert.bind(record.createdAtMs, at: 4)
                    try upsert.bind(record.json.canonicalString, at: 5)
                    try upsert.run()
                }
            }
        } catch {
            throw .storage(error)
        }
    }

    /// The locally indexed versions and their status, oldest first.
    public func indexedVersions() throws(RetrainerError) -> [(version: Int64, status: ModelStatus)] {
        do {
            return try database.withConnection { db in
                let statement = try db.statement("SELECT version, status FROM versions ORDER BY version")
                defer { statement.reset() }
                var versions: [(version: Int64, status: ModelStatus)] = []
                while try statement.step() {
                    if let status = ModelStatus(rawValue: statement.string(at: 1) ?? "") {
                        versions.append((statement.int64(at: 0), status))
                    }
                }
                return versions
            }
        } catch {
            throw .storage(error)
        }
    }

    // MARK: - Registry journal

    /// Stores the registry change about to be published (replacing any earlier one), so a change
    /// interrupted part-way is completed after a restart.
    public func journalRegistryChange(_ change: String) throws(RetrainerError) {
        do {
            try database.transaction { db in
                let upsert = try db.statement(
                    "INSERT INTO registry_journal(id, change) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET change = excluded.change")
                defer { upsert.reset() }
                try upsert.bind(change, at: 1)
                try upsert.run()
            }
        } catch {
            throw .storage(error)
        }
    }

    /// The journaled registry change not yet known to be complete, if any.
    public func journaledRegistryChange() throws(RetrainerError) -> String? {
        do {
            return try database.withConnection { db in
                let statement = try db.statement("SELECT change FROM registry_journal WHERE id = 1")
                defer { statement.reset() }
                return try statement.step() ? statement.string(at: 0) : nil
            }
        } catch {
            throw .storage(error)
        }
    }

    /// Forgets the journaled registry change once it is completely published.
    public func clearRegistryJournal() throws(RetrainerError) {
        do {
            try database.transaction { db in try db.execute("DELETE FROM registry_journal") }
        } catch {
            throw .storage(error)
        }
    }

    // MARK: - Encoding

    private static func insertPending(_ db: Connection, _ triggers: [Trigger]) throws {
        guard !triggers.isEmpty else { return }
        let next = try db.statement("SELECT coalesce(max(sequence), 0) + 1 FROM pending_triggers")
        _ = try next.step()
        var sequence = next.int64(at: 0)
        next.reset()
        let insert = try db.statement("""
            INSERT OR IGNORE INTO pending_triggers(id, kind, reason, cutoff_ms, requested_at_ms, actor, sequence)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """)
        defer { insert.reset() }
        for trigger in triggers {
            try insert.bind(trigger.id, at: 1)
            try insert.bind(trigger.kind.rawValue, at: 2)
            try insert.bind(trigger.reason, at: 3)
            if let cutoff = trigger.cutoffEventTimeMs { try insert.bind(cutoff, at: 4) } else { try insert.bindNull(at: 4) }
            try insert.bind(trigger.requestedAtMs, at: 5)
            try insert.bind(trigger.actor, at: 6)
            try insert.bind(sequence, at: 7)
            try insert.run()
            sequence += 1
        }
    }

    private static func readStreamState(_ db: Connection) throws -> StreamTriggers.State {
        let statement = try db.statement("SELECT name, value FROM counters")
        defer { statement.reset() }
        var state = StreamTriggers.State()
        while try statement.step() {
            let value: Int64? = statement.isNull(at: 1) ? nil : statement.int64(at: 1)
            switch statement.string(at: 0) {
            case "labels_since_trigger": state.labelsSinceTrigger = value ?? 0
            case "total_labels": state.totalLabels = value ?? 0
            case "next_boundary_ms": state.nextBoundaryMs = value
            default: break
            }
        }
        return state
    }

    private static func writeStreamState(_ db: Connection, _ state: StreamTriggers.State) throws {
        let upsert = try db.statement(
            "INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value")
        defer { upsert.reset() }
        for (name, value) in [("labels_since_trigger", Optional(state.labelsSinceTrigger)),
                              ("total_labels", Optional(state.totalLabels)), ("next_boundary_ms", state.nextBoundaryMs)] {
            try upsert.bind(name, at: 1)
            if let value { try upsert.bind(value, at: 2) } else { try upsert.bindNull(at: 2) }
            try upsert.run()
        }
    }

    static func encode(_ features: [FeatureValue]) -> String {
        JSONValue.object(JSONObject(features.map { ($0.name, JSONValue($0.value)) })).canonicalString
    }

    static func decode(_ text: String) -> [String: Double?] {
        guard let object = (try? JSONValue.parse(text))?.objectValue else { return [:] }
        var features: [String: Double?] = [:]
        for member in object { features[member.key] = .some(member.value.doubleValue) }
        return features
    }
}

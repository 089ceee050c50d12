import Contracts
import Foundation
import Kafka
import Storage
import Synchronization

/// Counts of what the join did, persisted with the join state (so they are exact across restarts).
public struct JoinCounters: Sendable, Equatable {
    /// Predictions accepted into the join.
    public var predictions = 0
    /// Predictions whose requestId was already known (ignored).
    public var duplicatePredictions = 0
    /// Predictions labeled by an outcome or review that arrived within the deadline.
    public var joined = 0
    /// Outcomes that arrived after their prediction's deadline.
    public var late = 0
    /// Late outcomes still emitted because the prediction was retained.
    public var lateEmitted = 0
    /// Outcomes whose prediction never arrived (within the deadline of the outcome's event time).
    public var orphans = 0
    /// Second outcomes (or second reviews) for an already labeled requestId.
    public var duplicates = 0
    /// Predictions that reached the deadline without a label and without a default label.
    public var unlabeled = 0
    /// Predictions labeled with the default label at the deadline.
    public var defaulted = 0
    /// Records that do not follow their contract.
    public var malformed = 0
    /// Review verdicts that ground truth later agreed (or disagreed) with.
    public var reviewAgreements = 0
    public var reviewDisagreements = 0

    public init() {}

    /// Every counter by its stable name.
    public static var fields: [(name: String, path: WritableKeyPath<JoinCounters, Int>)] { [
        ("predictions", \.predictions), ("duplicate_predictions", \.duplicatePredictions), ("joined", \.joined),
        ("late", \.late), ("late_emitted", \.lateEmitted), ("orphans", \.orphans), ("duplicates", \.duplicates),
        ("unlabeled", \.unlabeled), ("defaulted", \.defaulted), ("malformed", \.malformed),
        ("review_agreements", \.reviewAgreements), ("review_disagreements", \.reviewDisagreements),
    ] }

    /// Agreement of review verdicts with later ground truth (`nil` before any comparison).
    public var reviewerAgreement: Double? {
        let total = reviewAgreements + reviewDisagreements
        return total == 0 ? nil : Double(reviewAgreements) / Double(total)
    }
}

/// A labeled example waiting to be acknowledged by `loop.labeled`.
public struct OutboxEntry: Sendable, Hashable {
    /// The entry's number, increasing in the order entries were stored.
    public var sequence: Int64
    /// The input partition; the example goes to the same partition of `loop.labeled` (co-partitioned).
    public var partition: Int32
    public var requestId: String
    public var labelSource: LabelSource
    public var entity: String
    /// The example's bytes; empty for an entry read back from the store with a ``reference``
    /// until ``LabeledPublisher/recover()`` splices it again.
    public var bytes: [UInt8]
    /// Set when the example's prediction is in `loop.predictions` at a known offset (always, except
    /// for predictions moved over from stores that kept their records): the store then keeps this
    /// reference instead of the bytes (see ``PredictionReference``).
    public var reference: PredictionReference?
    /// Set only on an entry read from a store of an earlier layout, whose example refers to a
    /// `pending_batches` row; the "waiting references" migration replaces it by the example's bytes.
    var storedPrediction: StoredPredictionReference?

    /// The identity of one output: a request is emitted at most once per label source.
    public var outputKey: String { Self.outputKey(requestId: requestId, labelSource: labelSource.rawValue) }

    static func outputKey(requestId: String, labelSource: String) -> String { requestId + "\u{1f}" + labelSource }
}

/// Where a labeled example's prediction sits in `loop.predictions`, and what the label adds to it.
///
/// A labeled example is stored in the outbox as this reference rather than as a copy of the served
/// record (about 1 KB per example): the prediction stays in `loop.predictions` for the topic's
/// retention, so a restart re-reads it there, and ``ServedPrediction/labeledExampleBytes(label:source:delaySeconds:value:)``
/// splices the same bytes from it again.
public struct PredictionReference: Sendable, Hashable {
    /// The partition and offset of the prediction record in `loop.predictions`.
    public var partition: Int32
    public var offset: Int64
    public var label: Bool
    public var delaySeconds: Double
    public var value: Double?
}

/// Where a labeled example's prediction sat in a store of an earlier layout (a `pending_batches`
/// row and its position there), and what the label adds to it; read only by the migration.
struct StoredPredictionReference: Sendable, Hashable {
    var row: Int64
    var position: Int32
    var label: Bool
    var delaySeconds: Double
    var value: Double?
}

/// What one applied batch produced.
public struct JoinBatchResult: Sendable {
    /// New predictions accepted into the join (for drift monitoring).
    public var predictions: [ServedPrediction] = []
    /// Labeled examples emitted, in order.
    public var labeled: [JoinedExample] = []
    /// The same examples as stored in the outbox.
    public var outbox: [OutboxEntry] = []
    /// The counters after the batch.
    public var counters = JoinCounters()
    /// The latest event time seen over the batch's partitions, milliseconds.
    public var maxEventTimeMs: Int64?
}

/// A labeled example as the join emitted it: the served prediction and its label.
public struct JoinedExample: Sendable {
    public let prediction: ServedPrediction
    /// `true` for the positive class.
    public let label: Bool
    public let labelSource: LabelSource
    /// Outcome event time minus prediction event time, in seconds.
    public let labelDelaySeconds: Double
    /// The outcome's business value, if it carried one.
    public let value: Double?

    public var requestId: String { prediction.requestId }
    public var entity: String { prediction.entity }
    public var eventTimeMs: Int64 { prediction.eventTimeMs }
    public var score: Double { prediction.score }
    public var modelVersion: Int64? { prediction.modelVersion }
    public var challengers: [ChallengerScore] { prediction.challengers }
    /// The feature vector exactly as served.
    public var features: [FeatureValue] {
        zip(prediction.featureNames, prediction.featureValues).map { FeatureValue(name: $0, value: $1) }
    }
}

/// A prediction waiting for its outcome, as the review queue lists it.
public struct PendingPrediction: Sendable, Hashable {
    public var requestId: String
    public var entity: String
    public var partition: Int32
    public var eventTimeMs: Int64
    public var deadlineMs: Int64
    public var score: Double
    public var route: Route
    /// `true` while no label has been given.
    public var isPending: Bool
}

/// The join state: an in-memory index of retained predictions, outcomes waiting for their
/// prediction, deadlines and per-partition event-time clocks, with SQLite as the durable copy.
/// Each batch is joined in memory, then its net changes (per partition, one row of the predictions
/// it leaves waiting and one of its resolutions), the outbox of labeled examples (one row for the
/// batch), the counters and the input offsets are stored in one transaction. Records before a
/// partition's stored offset are skipped: a batch fetched again after a seek is not applied twice.
/// Served records are not stored: waiting predictions and outbox entries refer to their offsets in
/// `loop.predictions`, and the records of predictions still waiting are read back from there after
/// a restart (``predictionsToRestore()``, ``restoreServed(from:)``).
///
/// Because input offsets are stored in the same transaction as the state they produced, a restart
/// (even after `kill -9`) reloads the index from SQLite and resumes exactly after the last applied
/// batch; the outbox then holds any example whose delivery was not yet confirmed (see
/// ``LabeledPublisher``).
public final class JoinStore: Sendable {
    public let policy: JoinPolicy
    private let database: Database
    private let state: Mutex<JoinState>

    /// Opens (creating) the store at `path` (`:memory:` for a private in-memory store) and loads its index.
    public init(path: String, policy: JoinPolicy) throws(FeedbackError) {
        self.policy = policy
        do {
            database = try Database(path: path)
            try database.migrate(Self.migrations)
            let loaded = try database.withConnection { connection -> JoinState in
                try JoinState.load(from: connection, policy: policy)
            }
            state = Mutex(loaded)
        } catch {
            throw FeedbackError(.storage, "cannot open the join store \(path): \(error)")
        }
    }

    static let migrations: [Migration] = [
        Migration("join state", sql: """
            CREATE TABLE predictions (
                request_id TEXT PRIMARY KEY, partition INTEGER NOT NULL, entity TEXT NOT NULL,
                event_time_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL, purge_ms INTEGER NOT NULL,
                state INTEGER NOT NULL, route TEXT NOT NULL, score REAL NOT NULL,
                label INTEGER, label_source TEXT, body BLOB);
            CREATE INDEX predictions_deadline ON predictions(partition, deadline_ms) WHERE state = 0;
            CREATE INDEX predictions_purge ON predictions(partition, purge_ms) WHERE state <> 0;
            CREATE INDEX predictions_review ON predictions(route, state);
            CREATE TABLE early_outcomes (
                request_id TEXT PRIMARY KEY, partition INTEGER NOT NULL, event_time_ms INTEGER NOT NULL,
                expires_ms INTEGER NOT NULL, label INTEGER NOT NULL, value REAL, source TEXT NOT NULL, reviewer TEXT);
            CREATE INDEX early_outcomes_expiry ON early_outcomes(partition, expires_ms);
            CREATE TABLE input_offsets (
                topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                PRIMARY KEY (topic, partition));
            CREATE TABLE clocks (partition INTEGER PRIMARY KEY, max_event_ms INTEGER NOT NULL);
            CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, partition INTEGER NOT NULL, request_id TEXT NOT NULL,
                label_source TEXT NOT NULL, entity TEXT NOT NULL, body BLOB NOT NULL);
            CREATE TABLE output_offsets (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
            CREATE TABLE open_alerts (id TEXT PRIMARY KEY, record BLOB NOT NULL);
            """),
        // max_event_ms is the clock of loop.events; the join clock is the lesser of the two.
        Migration("prediction clock", sql: "ALTER TABLE clocks ADD COLUMN prediction_ms INTEGER"),
        // Deadlines, purges, expiries and the review queue are served by the in-memory index, so the
        // tables need no secondary indexes; a partition whose loop.events clock is unknown stores NULL.
        Migration("in-memory index", sql: """
            DROP INDEX predictions_deadline;
            DROP INDEX predictions_purge;
            DROP INDEX predictions_review;
            DROP INDEX early_outcomes_expiry;
            CREATE TABLE clocks_nullable (partition INTEGER PRIMARY KEY, max_event_ms INTEGER, prediction_ms INTEGER);
            INSERT INTO clocks_nullable(partition, max_event_ms, prediction_ms)
                SELECT partition, NULLIF(max_event_ms, -9223372036854775808), prediction_ms FROM clocks;
            DROP TABLE clocks;
            ALTER TABLE clocks_nullable RENAME TO clocks;
            """),
        // An example whose prediction arrived in the same batch is stored as a reference to it
        // (body empty, prediction_offset set), not as a copy of the served record.
        Migration("outbox references", sql: """
            ALTER TABLE outbox ADD COLUMN prediction_partition INTEGER;
            ALTER TABLE outbox ADD COLUMN prediction_offset INTEGER;
            ALTER TABLE outbox ADD COLUMN label INTEGER;
            ALTER TABLE outbox ADD COLUMN label_delay_seconds REAL;
            ALTER TABLE outbox ADD COLUMN value REAL;
            """),
        // The outbox holds one row per applied batch (its entries encoded by OutboxCodec) instead of
        // one row per example; pending examples move over unchanged.
        Migration("outbox batches") { connection in
            try connection.execute(
                "CREATE TABLE outbox_batches (first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, entries BLOB NOT NULL)")
            let rows = try connection.statement("""
                SELECT seq, partition, request_id, label_source, entity, body,
                       prediction_partition, prediction_offset, label, label_delay_seconds, value
                FROM outbox ORDER BY seq
                """)
            var entries: [OutboxEntry] = []
            while try rows.step() {
                let reference = rows.isNull(at: 7) ? nil : PredictionReference(
                    partition: Int32(rows.int64(at: 6)), offset: rows.int64(at: 7), label: rows.int64(at: 8) != 0,
                    delaySeconds: rows.double(at: 9), value: rows.isNull(at: 10) ? nil : rows.double(at: 10))
                entries.append(OutboxEntry(
                    sequence: rows.int64(at: 0), partition: Int32(rows.int64(at: 1)), requestId: rows.string(at: 2) ?? "",
                    labelSource: LabelSource(rawValue: rows.string(at: 3) ?? "") ?? .outcome,
                    entity: rows.string(at: 4) ?? "", bytes: reference == nil ? rows.blob(at: 5) ?? [] : [], reference: reference))
            }
            if let first = entries.first, let last = entries.last {
                try insertOutboxBatch(entries, first: first.sequence, last: last.sequence, connection)
            }
            try connection.execute("DROP TABLE outbox")
        },
        // Predictions labeled in the batch that brought them are stored as one row per batch and
        // input partition (encoded by ResolvedCodec), deleted once all of them are past their purge time.
        Migration("resolved batches", sql: """
            CREATE TABLE resolved_batches (
                id INTEGER PRIMARY KEY, partition INTEGER NOT NULL, purge_ms INTEGER NOT NULL, entries BLOB NOT NULL);
            CREATE INDEX resolved_batches_purge ON resolved_batches(partition, purge_ms);
            """),
        // Predictions waiting for a label are stored as one row per batch and input partition
        // (in the layout WaitingCodec.decodeRecords reads) and resolutions as resolved_batches rows, replacing the row per
        // prediction; stored predictions move over unchanged.
        Migration("pending batches") { connection in
            try connection.execute(
                "CREATE TABLE pending_batches (id INTEGER PRIMARY KEY, partition INTEGER NOT NULL, entries BLOB NOT NULL)")
            let rows = try connection.statement("""
                SELECT request_id, partition, entity, event_time_ms, deadline_ms, purge_ms, state, route, score, label,
                       label_source, body
                FROM predictions ORDER BY rowid
                """)
            var waiting: [Int32: [UInt8]] = [:]
            var resolved: [Int32: (purgeMs: Int64, entries: [UInt8])] = [:]
            while try rows.step() {
                let partition = Int32(rows.int64(at: 1))
                let entry = RetainedPrediction(
                    partition: partition, entity: rows.string(at: 2) ?? "", eventTimeMs: rows.int64(at: 3),
                    deadlineMs: rows.int64(at: 4), state: State(rawValue: rows.int64(at: 6)) ?? .labeled,
                    route: Route(rawValue: rows.string(at: 7) ?? "") ?? .auto, score: rows.double(at: 8),
                    label: rows.isNull(at: 9) ? nil : rows.int64(at: 9) != 0,
                    labelSource: rows.string(at: 10).flatMap(LabelSource.init(rawValue:)), served: nil)
                if entry.state != .labeled, let body = rows.blob(at: 11) {
                    WaitingCodec.encodeRecord(deadlineMs: entry.deadlineMs, served: body, into: &waiting[partition, default: []])
                }
                if entry.state != .pending {
                    let purgeMs = rows.int64(at: 5)
                    ResolvedCodec.encode(id: rows.string(at: 0) ?? "", entry, into: &resolved[partition, default: (purgeMs, [])].entries)
                    let latest = max(resolved[partition]?.purgeMs ?? purgeMs, purgeMs)
                    resolved[partition]?.purgeMs = latest
                }
            }
            let insertWaiting = try connection.statement("INSERT INTO pending_batches(partition, entries) VALUES (?1, ?2)")
            for (partition, entries) in waiting.sorted(by: { $0.key < $1.key }) {
                insertWaiting.reset()
                try insertWaiting.bind(Int64(partition), at: 1)
                try insertWaiting.bind(entries, at: 2)
                try insertWaiting.run()
            }
            let insertResolved = try connection.statement(
                "INSERT INTO resolved_batches(partition, purge_ms, entries) VALUES (?1, ?2, ?3)")
            for (partition, batch) in resolved.sorted(by: { $0.key < $1.key }) {
                insertResolved.reset()
                try insertResolved.bind(Int64(partition), at: 1)
                try insertResolved.bind(batch.purgeMs, at: 2)
                try insertResolved.bind(batch.entries, at: 3)
                try insertResolved.run()
            }
            try connection.execute("DROP TABLE predictions")
        },
        // Waiting predictions are stored as references to loop.predictions (encoded by WaitingCodec)
        // without their served records, one waiting_batches row per batch and partition, deleted once
        // all its predictions are past their purge time. Rows of pending_batches move over with their
        // records inline; outbox entries referring to such a row get their example's bytes.
        Migration("waiting references") { connection in
            try connection.execute("""
                CREATE TABLE waiting_batches (
                    id INTEGER PRIMARY KEY, partition INTEGER NOT NULL, last_deadline_ms INTEGER NOT NULL, entries BLOB NOT NULL);
                CREATE INDEX waiting_batches_purge ON waiting_batches(partition, last_deadline_ms);
                """)
            var records: [Int64: [(deadlineMs: Int64, served: [UInt8])]] = [:]
            let insert = try connection.statement(
                "INSERT INTO waiting_batches(partition, last_deadline_ms, entries) VALUES (?1, ?2, ?3)")
            let rows = try connection.statement("SELECT id, partition, entries FROM pending_batches ORDER BY id")
            while try rows.step() {
                let stored = try rows.withBlob(at: 2) { blob throws in
                    try blob.map { blob throws in try WaitingCodec.decodeRecords(blob) } ?? []
                }
                records[rows.int64(at: 0)] = stored
                var entries: [UInt8] = []
                var lastDeadline = Int64.min
                for (deadlineMs, served) in stored where !served.isEmpty {
                    let prediction = try ServedPrediction(bytes: served)
                    WaitingCodec.encode(WaitingCodec.Entry(
                        deadlineMs: deadlineMs, offset: -1, requestId: prediction.requestId, entity: prediction.entity,
                        eventTimeMs: prediction.eventTimeMs, route: prediction.route, score: prediction.score, served: served),
                        into: &entries)
                    lastDeadline = max(lastDeadline, deadlineMs)
                }
                guard !entries.isEmpty else { continue }
                insert.reset()
                try insert.bind(rows.int64(at: 1), at: 1)
                try insert.bind(lastDeadline, at: 2)
                try insert.bind(entries, at: 3)
                try insert.run()
            }
            let batches = try connection.statement("SELECT first_seq, entries FROM outbox_batches")
            var rewritten: [(first: Int64, entries: [UInt8])] = []
            while try batches.step() {
                var entries = try batches.withBlob(at: 1) { blob throws in try blob.map { blob throws in try OutboxCodec.decode(blob) } ?? [] }
                guard entries.contains(where: { $0.storedPrediction != nil }) else { continue }
                for index in entries.indices {
                    guard let stored = entries[index].storedPrediction else { continue }
                    guard let row = records[stored.row], row.indices.contains(Int(stored.position)),
                          let prediction = try? ServedPrediction(bytes: row[Int(stored.position)].served)
                    else {
                        throw FeedbackError(.storage, "the stored prediction of \(entries[index].requestId) is missing from row \(stored.row)")
                    }
                    entries[index].bytes = prediction.labeledExampleBytes(
                        label: stored.label, source: entries[index].labelSource, delaySeconds: stored.delaySeconds, value: stored.value)
                    entries[index].storedPrediction = nil
                }
                var blob: [UInt8] = []
                OutboxCodec.encode(entries, into: &blob)
                rewritten.append((batches.int64(at: 0), blob))
            }
            let update = try connection.statement("UPDATE outbox_batches SET entries = ?2 WHERE first_seq = ?1")
            for (first, entries) in rewritten {
                update.reset()
                try update.bind(first, at: 1)
                try update.bind(entries, at: 2)
                try update.run()
            }
            try connection.execute("DROP TABLE pending_batches")
        },
    ]

    /// Stores one batch's outbox entries (sequences `first...last`) as one row.
    static func insertOutboxBatch(_ entries: [OutboxEntry], first: Int64, last: Int64, _ connection: Connection) throws {
        var blob: [UInt8] = []
        OutboxCodec.encode(entries, into: &blob)
        let insert = try connection.statement("INSERT INTO outbox_batches(first_seq, last_seq, entries) VALUES (?1, ?2, ?3)")
        try insert.bind(first, at: 1)
        try insert.bind(last, at: 2)
        try insert.bind(blob, at: 3)
        try insert.run()
    }

    /// Prediction states, as stored.
    enum State: Int64 {
        case pending = 0
        case labeled = 1
        case expiredUnlabeled = 2
        case expiredDefaulted = 3
    }

    // MARK: - Reading

    /// The counters now.
    public var counters: JoinCounters { state.withLock { $0.counters } }

    /// The join clock of each partition (the event time both inputs have reached), milliseconds.
    public var clocks: [Int32: Int64] { state.withLock { $0.clocks } }

    /// The next offset to read of each stored input partition among `partitions`.
    public func storedOffsets(for partitions: [TopicPartition]) throws(FeedbackError) -> [TopicPartition: Int64] {
        try read { connection in
            let statement = try connection.statement("SELECT next_offset FROM input_offsets WHERE topic = ? AND partition = ?")
            var offsets: [TopicPartition: Int64] = [:]
            for partition in partitions {
                statement.reset()
                try statement.bind(partition.topic, at: 1)
                try statement.bind(Int64(partition.partition), at: 2)
                if try statement.step() { offsets[partition] = statement.int64(at: 0) }
            }
            return offsets
        }
    }

    /// Labeled examples stored but not yet confirmed delivered, oldest first. Entries stored as a
    /// ``PredictionReference`` come back with empty ``OutboxEntry/bytes``.
    public func outbox() throws(FeedbackError) -> [OutboxEntry] {
        try read { connection in try Self.storedOutbox(connection) }
    }

    /// The outbox entries as stored (references without bytes).
    static func storedOutbox(_ connection: Connection) throws -> [OutboxEntry] {
        let statement = try connection.statement("SELECT entries FROM outbox_batches ORDER BY first_seq")
        var entries: [OutboxEntry] = []
        while try statement.step() {
            try statement.withBlob(at: 0) { blob throws in
                if let blob { entries.append(contentsOf: try OutboxCodec.decode(blob)) }
            }
        }
        return entries
    }

    /// The next offset of `loop.labeled` partition `partition` after the last confirmed delivery.
    public func outputOffset(partition: Int32) throws(FeedbackError) -> Int64? {
        try read { connection in
            let statement = try connection.statement("SELECT next_offset FROM output_offsets WHERE partition = ?")
            try statement.bind(Int64(partition), at: 1)
            return try statement.step() ? statement.int64(at: 0) : nil
        }
    }

    /// The prediction `requestId`, whether pending or retained after its label or deadline.
    public func prediction(requestId: String) throws(FeedbackError) -> PendingPrediction? {
        state.withLock { state in state.retained[requestId].map { $0.listing(requestId: requestId) } }
    }

    /// Pending predictions routed to review: the most uncertain (score closest to `threshold`) first,
    /// then the oldest.
    public func reviewQueue(threshold: Double, limit: Int) throws(FeedbackError) -> [PendingPrediction] {
        let queue = state.withLock { state in
            state.reviewPending.compactMap { id in state.retained[id].map { $0.listing(requestId: id) } }
        }
        return queue.sorted { a, b in
            let (ua, ub) = (abs(a.score - threshold), abs(b.score - threshold))
            if ua != ub { return ua < ub }
            if a.eventTimeMs != b.eventTimeMs { return a.eventTimeMs < b.eventTimeMs }
            return a.requestId < b.requestId
        }.prefix(max(0, limit)).map { $0 }
    }

    /// The number of pending predictions routed to review.
    public func reviewQueueSize() throws(FeedbackError) -> Int {
        state.withLock { $0.reviewPending.count }
    }

    // MARK: - Restoring served records

    /// Where the retained predictions whose served record is still needed (pending, or expired and
    /// waiting for a late outcome) but not in memory sit in `loop.predictions`: partition → offsets,
    /// ascending. After a restart these are every such prediction; read them back and hand them to
    /// ``restoreServed(from:)`` before applying batches.
    public func predictionsToRestore() -> [Int32: [Int64]] {
        state.withLock { state in
            var offsets: [Int32: [Int64]] = [:]
            for entry in state.retained.values where entry.state != .labeled && entry.served == nil && entry.offset >= 0 {
                offsets[entry.partition, default: []].append(entry.offset)
            }
            return offsets.mapValues { $0.sorted() }
        }
    }

    /// Gives retained predictions their served records back from `records` of `loop.predictions`
    /// (see ``predictionsToRestore()``); a record that is not the prediction stored at its partition
    /// and offset is ignored. Returns how many predictions got their record.
    @discardableResult
    public func restoreServed(from records: [ConsumedRecord]) -> Int {
        var names = FeatureNameCache()
        let served = records.compactMap { record in
            (try? ServedPrediction(bytes: record.value ?? [], names: &names)).map { (record.partition, record.offset, $0) }
        }
        return state.withLock { state in
            var restored = 0
            for (partition, offset, prediction) in served {
                guard let entry = state.retained[prediction.requestId], entry.partition == partition, entry.offset == offset,
                      entry.state != .labeled, entry.served == nil
                else { continue }
                entry.served = prediction
                restored += 1
            }
            return restored
        }
    }

    // MARK: - Open alerts

    /// The open alerts, as stored by ``saveOpenAlerts(_:)``.
    public func openAlerts() throws(FeedbackError) -> [MonitoringRecord] {
        try read { connection in
            let statement = try connection.statement("SELECT record FROM open_alerts ORDER BY id")
            var records: [MonitoringRecord] = []
            while try statement.step() {
                if let bytes = statement.blob(at: 0), let record = try? MonitoringRecord(bytes: bytes) { records.append(record) }
            }
            return records
        }
    }

    /// Replaces the stored open alerts.
    public func saveOpenAlerts(_ alerts: [MonitoringRecord]) throws(FeedbackError) {
        try write { connection in
            try connection.execute("DELETE FROM open_alerts")
            let insert = try connection.statement("INSERT INTO open_alerts(id, record) VALUES (?, ?)")
            for alert in alerts {
                insert.reset()
                try insert.bind(alert.alertId ?? "", at: 1)
                try insert.bind(alert.bytes, at: 2)
                try insert.run()
            }
        }
    }

    // MARK: - Delivery bookkeeping

    /// Removes delivered entries from the outbox and remembers where `loop.labeled` ended.
    public func confirmDelivered(_ entries: [OutboxEntry], reports: [DeliveryReport]) throws(FeedbackError) {
        guard !entries.isEmpty else { return }
        let confirmed = entries.map(\.sequence).sorted()
        try write { connection in
            try Self.removeFromOutbox(confirmed, connection)
            var ends: [Int32: Int64] = [:]
            for report in reports { ends[report.partition] = max(ends[report.partition] ?? 0, report.offset + 1) }
            let upsert = try connection.statement("""
                INSERT INTO output_offsets(partition, next_offset) VALUES (?1, ?2)
                ON CONFLICT(partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)
                """)
            for (partition, end) in ends {
                upsert.reset()
                try upsert.bind(Int64(partition), at: 1)
                try upsert.bind(end, at: 2)
                try upsert.run()
            }
        }
    }

    /// Removes the entries with sequences `confirmed` (sorted) from the stored batches: a batch
    /// whose remaining entries are all confirmed loses its row; one confirmed in part is rewritten.
    private static func removeFromOutbox(_ confirmed: [Int64], _ connection: Connection) throws {
        guard let low = confirmed.first, let high = confirmed.last else { return }
        let contiguous = high - low + 1 == Int64(confirmed.count)
        let overlapping = try connection.statement(
            "SELECT first_seq, last_seq FROM outbox_batches WHERE last_seq >= ?1 AND first_seq <= ?2 ORDER BY first_seq")
        try overlapping.bind(low, at: 1)
        try overlapping.bind(high, at: 2)
        var rows: [(first: Int64, last: Int64)] = []
        while try overlapping.step() { rows.append((overlapping.int64(at: 0), overlapping.int64(at: 1))) }
        let delete = try connection.statement("DELETE FROM outbox_batches WHERE first_seq = ?1")
        for row in rows {
            var remaining: [OutboxEntry] = []
            if !(contiguous && row.first >= low && row.last <= high) {
                let read = try connection.statement("SELECT entries FROM outbox_batches WHERE first_seq = ?1")
                try read.bind(row.first, at: 1)
                guard try read.step() else { continue }
                let stored = try read.withBlob(at: 0) { blob throws -> [OutboxEntry] in
                    guard let blob else { return [] }
                    return try OutboxCodec.decode(blob)
                }
                remaining = stored.filter { !Self.contains(confirmed, $0.sequence) }
            }
            if remaining.isEmpty {
                delete.reset()
                try delete.bind(row.first, at: 1)
                try delete.run()
            } else {
                var blob: [UInt8] = []
                OutboxCodec.encode(remaining, into: &blob)
                let update = try connection.statement("UPDATE outbox_batches SET entries = ?2 WHERE first_seq = ?1")
                try update.bind(row.first, at: 1)
                try update.bind(blob, at: 2)
                try update.run()
            }
        }
    }

    /// Whether the sorted `sequences` hold `sequence`.
    private static func contains(_ sequences: [Int64], _ sequence: Int64) -> Bool {
        var (low, high) = (0, sequences.count)
        while low < high {
            let middle = (low + high) / 2
            if sequences[middle] < sequence { low = middle + 1 } else { high = middle }
        }
        return low < sequences.count && sequences[low] == sequence
    }

    // MARK: - Applying a batch

    /// Applies a batch: joins it in memory, then stores its net changes, counters, input offsets and
    /// outbox in one transaction. If the transaction fails the in-memory state is left as it was.
    public func apply(_ records: [InputRecord]) throws(FeedbackError) -> JoinBatchResult {
        let policy = self.policy
        return try state.withLock { current throws(FeedbackError) in
            // The batch works on the state itself (moved out, so its tables are never copied); if
            // the transaction fails, the state is reloaded from what SQLite kept, with the served
            // records (which SQLite does not keep) taken over from memory.
            var batch = BatchApplication(policy: policy, state: JoinState())
            swap(&batch.state, &current)
            batch.apply(records)
            do {
                try database.transaction { connection in try batch.store(in: connection) }
            } catch {
                let reason = "cannot apply a batch to the join store: \(error)"
                do {
                    current = try database.withConnection { connection in try JoinState.load(from: connection, policy: policy) }
                } catch {
                    throw FeedbackError(.storage, reason + "; reloading the join state failed too: \(error)")
                }
                current.takeServed(from: batch.state)
                throw FeedbackError(.storage, reason, isRetryable: true)
            }
            batch.releaseServed()
            swap(&batch.state, &current)
            return batch.result
        }
    }

    private func read<T: Sendable>(_ body: (Connection) throws -> T) throws(FeedbackError) -> T {
        do {
            return try database.withConnection(body)
        } catch {
            throw FeedbackError(.storage, "join store read failed: \(error)", isRetryable: true)
        }
    }

    private func write(_ body: (Connection) throws -> Void) throws(FeedbackError) {
        do {
            try database.transaction(body)
        } catch {
            throw FeedbackError(.storage, "join store write failed: \(error)", isRetryable: true)
        }
    }
}

// MARK: - In-memory state

/// A prediction the join retains: pending, or resolved and kept until its purge time so late and
/// duplicate outcomes are recognised.
///
/// A reference: the index's buckets hold a pointer (growing the index moves 8 bytes per entry,
/// not the entry), and a batch updates an entry in place after one lookup. Entries are only read
/// or changed under the join store's lock (as part of its ``JoinState``); a batch whose
/// transaction fails reloads the whole state, so changes it made in place never outlive it.
final class RetainedPrediction: @unchecked Sendable {
    var partition: Int32
    var entity: String
    var eventTimeMs: Int64
    var deadlineMs: Int64
    var state: JoinStore.State
    var route: Route
    var score: Double
    var label: Bool?
    var labelSource: LabelSource?
    /// The number of the batch that brought it (0: loaded from the store).
    var batch: UInt64 = 0
    /// The number of the last batch that changed it: a batch lists it among its changes once.
    var changed: UInt64 = 0
    /// Set when its purge takes it out of the index: a batch that listed it among its changes
    /// then stores nothing of it.
    var purged = false
    /// Its offset in `loop.predictions` (-1: unknown, for a prediction moved over from a store
    /// that kept its record): its example is stored in the outbox as a reference to it.
    var offset: Int64 = -1
    /// The served record, kept until a label arrives (a late outcome is still emitted after the
    /// deadline); after a restart it is read back from `loop.predictions` (see
    /// ``JoinStore/restoreServed(from:)``).
    var served: ServedPrediction?

    init(
        partition: Int32, entity: String, eventTimeMs: Int64, deadlineMs: Int64, state: JoinStore.State, route: Route,
        score: Double, label: Bool? = nil, labelSource: LabelSource? = nil, served: ServedPrediction?
    ) {
        self.partition = partition
        self.entity = entity
        self.eventTimeMs = eventTimeMs
        self.deadlineMs = deadlineMs
        self.state = state
        self.route = route
        self.score = score
        self.label = label
        self.labelSource = labelSource
        self.served = served
    }

    func listing(requestId: String) -> PendingPrediction {
        PendingPrediction(
            requestId: requestId, entity: entity, partition: partition, eventTimeMs: eventTimeMs, deadlineMs: deadlineMs,
            score: score, route: route, isPending: state == .pending)
    }
}


/// An outcome waiting for its prediction.
struct HeldOutcome: Sendable {
    var outcome: Outcome
    var partition: Int32
    var expiresMs: Int64
}

/// A min-heap of (time, requestId, item), earliest first and by request id among equal times (so
/// the order is the same after a reload). Entries are not removed when their request changes;
/// whoever pops one checks it still applies.
struct TimeQueue<Item: Sendable>: Sendable {
    typealias Entry = (time: Int64, id: String, item: Item)
    private var items: [Entry] = []

    /// Whether the entry at `a` comes before the one at `b` (read in place: copying an entry retains its item).
    private func less(_ a: Int, _ b: Int) -> Bool {
        let (timeA, timeB) = (items[a].time, items[b].time)
        return timeA != timeB ? timeA < timeB : items[a].id < items[b].id
    }

    mutating func push(_ time: Int64, _ id: String, _ item: Item) {
        items.append((time, id, item))
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard less(child, parent) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the earliest entry at or before `time`.
    mutating func pop(dueBy time: Int64) -> Entry? {
        guard let first = items.first, first.time <= time else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                guard left < items.count else { break }
                let right = left + 1
                let child = right < items.count && less(right, left) ? right : left
                guard less(child, parent) else { break }
                items.swapAt(child, parent)
                parent = child
            }
        }
        return first
    }
}

/// Everything the join knows, in memory; the SQLite tables are its durable copy.
struct JoinState: Sendable {
    /// The latest event time seen per partition on each input.
    var eventClocks: [Int32: Int64] = [:]
    var predictionClocks: [Int32: Int64] = [:]
    var counters = JoinCounters()
    /// The next offset to apply of each input partition (records before it are skipped).
    var inputOffsets: [TopicPartition: Int64] = [:]
    /// Batches applied since the state was loaded.
    var batches: UInt64 = 0
    /// The sequence number of the next outbox entry.
    var nextOutboxSequence: Int64 = 0
    var retained: [String: RetainedPrediction] = [:]
    var held: [String: HeldOutcome] = [:]
    /// Pending predictions routed to review.
    var reviewPending: Set<String> = []
    /// Per partition: deadlines of pending predictions, purge times of resolved ones (each with the
    /// entry itself, so a due one needs no lookup by id), expiry of held outcomes.
    var deadlines: [Int32: TimeQueue<RetainedPrediction>] = [:]
    var purges: [Int32: TimeQueue<RetainedPrediction>] = [:]
    var expiries: [Int32: TimeQueue<Void>] = [:]

    /// The join clock of each partition: the event time both inputs have reached. Deadlines follow it,
    /// so an input running ahead (a replay reaches `loop.events` long before its predictions are made)
    /// never expires predictions or outcomes the other input has not caught up with.
    var clocks: [Int32: Int64] {
        predictionClocks.reduce(into: [:]) { clocks, entry in
            if let events = eventClocks[entry.key] { clocks[entry.key] = min(entry.value, events) }
        }
    }

    func clock(_ partition: Int32) -> Int64? {
        guard let predictions = predictionClocks[partition], let events = eventClocks[partition] else { return nil }
        return min(predictions, events)
    }

    /// Gives the retained predictions that still need their served record and lack it the record
    /// `previous` holds (the state a failed batch worked on: SQLite keeps no served records).
    mutating func takeServed(from previous: JoinState) {
        for (id, entry) in retained where entry.state != .labeled && entry.served == nil {
            entry.served = previous.retained[id]?.served
        }
    }

    /// Reads the durable copy.
    static func load(from connection: Connection, policy: JoinPolicy) throws -> JoinState {
        var state = JoinState()
        let clocks = try connection.statement("SELECT partition, max_event_ms, prediction_ms FROM clocks")
        while try clocks.step() {
            let partition = Int32(clocks.int64(at: 0))
            if !clocks.isNull(at: 1) { state.eventClocks[partition] = clocks.int64(at: 1) }
            if !clocks.isNull(at: 2) { state.predictionClocks[partition] = clocks.int64(at: 2) }
        }
        let counters = try connection.statement("SELECT name, value FROM counters")
        while try counters.step() {
            let name = counters.string(at: 0) ?? ""
            if let field = JoinCounters.fields.first(where: { $0.name == name }) {
                state.counters[keyPath: field.path] = Int(counters.int64(at: 1))
            }
        }
        let offsets = try connection.statement("SELECT topic, partition, next_offset FROM input_offsets")
        while try offsets.step() {
            state.inputOffsets[TopicPartition(topic: offsets.string(at: 0) ?? "", partition: Int32(offsets.int64(at: 1)))] = offsets.int64(at: 2)
        }
        let outbox = try connection.statement("SELECT last_seq FROM outbox_batches ORDER BY first_seq DESC LIMIT 1")
        if try outbox.step() { state.nextOutboxSequence = outbox.int64(at: 0) + 1 }
        var names = FeatureNameCache()
        let waiting = try connection.statement("SELECT id, partition, entries FROM waiting_batches")
        while try waiting.step() {
            let partition = Int32(waiting.int64(at: 1))
            let clock = state.clock(partition) ?? Int64.min
            try waiting.withBlob(at: 2) { blob throws in
                guard let blob else { return }
                for stored in try WaitingCodec.decode(blob) where stored.deadlineMs + policy.retentionMs > clock {
                    var served: ServedPrediction?
                    if !stored.served.isEmpty {
                        do {
                            served = try ServedPrediction(bytes: stored.served, names: &names)
                        } catch {
                            throw FeedbackError(.storage, "the stored prediction \(stored.requestId) cannot be read: \(error)")
                        }
                    }
                    let entry = RetainedPrediction(
                        partition: partition, entity: stored.entity, eventTimeMs: stored.eventTimeMs, deadlineMs: stored.deadlineMs,
                        state: .pending, route: stored.route, score: stored.score, served: served)
                    entry.offset = stored.offset
                    state.retained[stored.requestId] = entry
                }
            }
        }
        // Resolutions in the order they were stored: a later one (a late outcome) supersedes an earlier one.
        let resolved = try connection.statement("SELECT partition, entries FROM resolved_batches ORDER BY id")
        while try resolved.step() {
            let partition = Int32(resolved.int64(at: 0))
            let clock = state.clock(partition) ?? Int64.min
            try resolved.withBlob(at: 1) { blob throws in
                guard let blob else { return }
                for (id, resolution) in try ResolvedCodec.decode(blob, partition: partition)
                where resolution.deadlineMs + policy.retentionMs > clock {
                    guard let entry = state.retained[id] else {
                        state.retained[id] = resolution
                        continue
                    }
                    entry.state = resolution.state
                    entry.label = resolution.label
                    entry.labelSource = resolution.labelSource
                    if entry.state == .labeled { entry.served = nil }
                }
            }
        }
        for (id, entry) in state.retained {
            if entry.state == .pending {
                state.deadlines[entry.partition, default: TimeQueue()].push(entry.deadlineMs, id, entry)
                if entry.route == .review { state.reviewPending.insert(id) }
            } else {
                state.purges[entry.partition, default: TimeQueue()].push(entry.deadlineMs + policy.retentionMs, id, entry)
            }
        }
        let held = try connection.statement("""
            SELECT request_id, partition, event_time_ms, expires_ms, label, value, source, reviewer FROM early_outcomes
            """)
        while try held.step() {
            let id = held.string(at: 0) ?? ""
            let outcome = Outcome(
                requestId: id, label: held.int64(at: 4) != 0, eventTimeMs: held.int64(at: 2),
                value: held.isNull(at: 5) ? nil : held.double(at: 5),
                source: LabelSource(rawValue: held.string(at: 6) ?? "") ?? .outcome, reviewer: held.string(at: 7))
            let entry = HeldOutcome(outcome: outcome, partition: Int32(held.int64(at: 1)), expiresMs: held.int64(at: 3))
            state.held[id] = entry
            state.expiries[entry.partition, default: TimeQueue()].push(entry.expiresMs, id, ())
        }
        return state
    }
}

// MARK: - One batch

/// The join logic of one batch: applied to a copy of the state in memory, then its net changes stored.
private struct BatchApplication {
    let policy: JoinPolicy
    var state: JoinState
    var result = JoinBatchResult()
    private var touched: Set<Int32> = []
    private var offsets: [TopicPartition: Int64] = [:]
    /// Requests whose prediction changed in this batch, each once (see ``RetainedPrediction/changed``),
    /// requests whose held outcome changed, and held outcomes new in it.
    private var changedPredictions: [(id: String, entry: RetainedPrediction)] = []
    private var changedHeld: Set<String> = []
    private var newHeld: Set<String> = []
    /// This batch's number (``RetainedPrediction/batch`` of the predictions it brings).
    private var number: UInt64 = 0
    /// The join clock each expired partition reached: stored batches of waiting and resolved
    /// predictions all purged by then are deleted.
    private var purgedUpTo: [Int32: Int64] = [:]
    /// Predictions labeled in this batch: their served records are let go once it is stored (until
    /// then a failed transaction can give them back to the reloaded state).
    private var labeled: [RetainedPrediction] = []
    /// Outbox rows to insert: the partition, bytes and prediction reference of each example of
    /// `result.labeled`, in order.
    private var outboxRows: [(partition: Int32, bytes: [UInt8], reference: PredictionReference?)] = []

    init(policy: JoinPolicy, state: JoinState) {
        self.policy = policy
        self.state = state
    }

    mutating func apply(_ records: [InputRecord]) {
        state.batches += 1
        number = state.batches
        // The batch's input partitions, each with its next offset and the latest event times it
        // brought, found by a short scan (a batch holds few partitions) rather than by hashing the
        // topic whenever the input changes; offsets and clocks are saved once per partition.
        var inputs: [InputProgress] = []
        var current = 0
        records.withUnsafeBufferPointer { records in
            for index in records.indices {
                // Fields are read one by one: binding the record copied all of it.
                let partition = records[index].partition
                let offset = records[index].offset
                if current >= inputs.count || inputs[current].partition.partition != partition
                    || inputs[current].partition.topic != records[index].topic {
                    if let known = inputs.firstIndex(where: { $0.partition.partition == partition && $0.partition.topic == records[index].topic }) {
                        current = known
                    } else {
                        let started = TopicPartition(topic: records[index].topic, partition: partition)
                        current = inputs.count
                        inputs.append(InputProgress(partition: started, next: state.inputOffsets[started] ?? Int64.min))
                        touched.insert(partition)
                    }
                }
                // A record before the stored offset is already applied (a batch fetched again after a seek).
                guard offset >= inputs[current].next else { continue }
                inputs[current].next = offset + 1
                switch records[index].input {
                case .prediction(let prediction):
                    inputs[current].predictionTime = max(inputs[current].predictionTime, prediction.eventTimeMs)
                    accept(prediction, partition: partition, offset: offset)
                case .outcome(let outcome):
                    inputs[current].eventTime = max(inputs[current].eventTime, outcome.eventTimeMs)
                    accept(outcome, partition: partition)
                case .clock(let time):
                    inputs[current].eventTime = max(inputs[current].eventTime, time)
                case .malformed(_, let time):
                    if let time { inputs[current].eventTime = max(inputs[current].eventTime, time) }
                    state.counters.malformed += 1
                case .ignored:
                    break
                }
            }
        }
        // Nothing in the loop reads the clocks: they move once per partition, before deadlines are checked.
        for input in inputs {
            saveOffset(input.partition, input.next)
            advancePredictions(input.partition.partition, to: input.predictionTime)
            advance(input.partition.partition, to: input.eventTime)
        }
        for partition in touched.sorted() { expire(partition) }
        result.counters = state.counters
        result.maxEventTimeMs = touched.compactMap { state.clock($0) }.max()
    }

    /// What a batch brought of one input partition: the next offset to apply, and the latest
    /// event time of its predictions and of its other records (`Int64.min`: none).
    private struct InputProgress {
        let partition: TopicPartition
        var next: Int64
        var predictionTime = Int64.min
        var eventTime = Int64.min
    }

    private mutating func saveOffset(_ partition: TopicPartition, _ next: Int64) {
        guard next > state.inputOffsets[partition] ?? Int64.min else { return }
        state.inputOffsets[partition] = next
        offsets[partition] = next
    }

    private mutating func advance(_ partition: Int32, to time: Int64) {
        if time > state.eventClocks[partition] ?? Int64.min { state.eventClocks[partition] = time }
    }

    private mutating func advancePredictions(_ partition: Int32, to time: Int64) {
        if time > state.predictionClocks[partition] ?? Int64.min { state.predictionClocks[partition] = time }
    }

    // MARK: Predictions

    private mutating func accept(_ prediction: ServedPrediction, partition: Int32, offset: Int64) {
        let id = prediction.requestId
        let deadline = prediction.eventTimeMs + policy.deadlineMs
        let entry = RetainedPrediction(
            partition: partition, entity: prediction.entity, eventTimeMs: prediction.eventTimeMs, deadlineMs: deadline,
            state: .pending, route: prediction.route, score: prediction.score, served: prediction)
        entry.batch = number
        entry.offset = offset
        // One lookup inserts a new prediction; a known one is put back.
        if let known = state.retained.updateValue(entry, forKey: id) {
            state.retained[id] = known
            state.counters.duplicatePredictions += 1
            return
        }
        state.counters.predictions += 1
        result.predictions.append(prediction)
        noteChange(entry, id: id)
        // (An empty table is not searched: hashing the id is most of a lookup's cost.)
        if !state.held.isEmpty, let held = state.held.removeValue(forKey: id) {
            changedHeld.insert(id)
            let outcome = held.outcome
            if outcome.eventTimeMs > deadline {
                state.counters.late += 1
                state.counters.lateEmitted += 1
            } else {
                state.counters.joined += 1
            }
            resolve(entry, id: id, state: .labeled, label: outcome.label, source: outcome.source)
            emit(prediction, of: entry, partition: partition, label: outcome.label, source: outcome.source,
                 delayMs: outcome.eventTimeMs - prediction.eventTimeMs, value: outcome.value)
            return
        }
        state.deadlines[partition, default: TimeQueue()].push(deadline, id, entry)
        if entry.route == .review { state.reviewPending.insert(id) }
    }

    /// Gives a retained prediction its final state and schedules its purge.
    private mutating func resolve(_ entry: RetainedPrediction, id: String, state resolved: JoinStore.State, label: Bool?, source: LabelSource?) {
        entry.state = resolved
        entry.label = label
        entry.labelSource = source
        if resolved == .labeled { labeled.append(entry) }
        if !state.reviewPending.isEmpty { state.reviewPending.remove(id) }
        state.purges[entry.partition, default: TimeQueue()].push(entry.deadlineMs + policy.retentionMs, id, entry)
    }

    // MARK: Outcomes

    private mutating func accept(_ outcome: Outcome, partition: Int32) {
        let id = outcome.requestId
        guard let entry = state.retained[id] else {
            hold(outcome, partition: partition)
            return
        }
        if entry.state == .labeled {
            compareWithReview(outcome, previousLabel: entry.label, previousSource: entry.labelSource)
            return
        }
        // The record is missing only when a restart could not read it back from loop.predictions.
        guard let served = entry.served else {
            state.counters.malformed += 1
            return
        }
        if entry.state == .pending, outcome.eventTimeMs <= entry.deadlineMs {
            state.counters.joined += 1
        } else {
            state.counters.late += 1
            state.counters.lateEmitted += 1
        }
        emit(served, of: entry, partition: partition, label: outcome.label, source: outcome.source,
             delayMs: outcome.eventTimeMs - served.eventTimeMs, value: outcome.value)
        if entry.state == .pending {
            resolve(entry, id: id, state: .labeled, label: outcome.label, source: outcome.source)
        } else {
            entry.state = .labeled
            entry.label = outcome.label
            entry.labelSource = outcome.source
            labeled.append(entry)
        }
        noteChange(entry, id: id)
    }

    /// Lists `entry` among the batch's changed predictions unless it is already.
    private mutating func noteChange(_ entry: RetainedPrediction, id: String) {
        guard entry.changed != number else { return }
        entry.changed = number
        changedPredictions.append((id, entry))
    }

    /// A second label for a labeled prediction: a duplicate, or ground truth judging a review verdict.
    private mutating func compareWithReview(_ outcome: Outcome, previousLabel: Bool?, previousSource: LabelSource?) {
        switch (previousSource, outcome.source) {
        case (.review, .outcome), (.outcome, .review):
            if previousLabel == outcome.label {
                state.counters.reviewAgreements += 1
            } else {
                state.counters.reviewDisagreements += 1
            }
        default:
            state.counters.duplicates += 1
        }
    }

    private mutating func hold(_ outcome: Outcome, partition: Int32) {
        let id = outcome.requestId
        guard state.held[id] == nil else {
            state.counters.duplicates += 1
            return
        }
        let expires = outcome.eventTimeMs + policy.deadlineMs
        state.held[id] = HeldOutcome(outcome: outcome, partition: partition, expiresMs: expires)
        state.expiries[partition, default: TimeQueue()].push(expires, id, ())
        changedHeld.insert(id)
        newHeld.insert(id)
    }

    // MARK: Deadlines and retention

    private mutating func expire(_ partition: Int32) {
        guard let clock = state.clock(partition) else { return }
        var deadlines = state.deadlines.removeValue(forKey: partition) ?? TimeQueue()
        while let (time, id, entry) = deadlines.pop(dueBy: clock) {
            // A pending entry is the one retained under its id (only a purge, after resolution, removes it).
            guard entry.state == .pending, entry.partition == partition, entry.deadlineMs == time else { continue }
            noteChange(entry, id: id)
            if let label = policy.defaultLabel, let served = entry.served {
                resolve(entry, id: id, state: .expiredDefaulted, label: label, source: .default)
                state.counters.defaulted += 1
                emit(served, of: entry, partition: partition, label: label, source: .default, delayMs: policy.deadlineMs, value: nil)
            } else {
                resolve(entry, id: id, state: .expiredUnlabeled, label: nil, source: nil)
                state.counters.unlabeled += 1
            }
        }
        state.deadlines[partition] = deadlines

        var expiries = state.expiries.removeValue(forKey: partition) ?? TimeQueue()
        while let (time, id, _) = expiries.pop(dueBy: clock) {
            guard let held = state.held[id], held.partition == partition, held.expiresMs == time else { continue }
            state.held[id] = nil
            changedHeld.insert(id)
            state.counters.orphans += 1
        }
        state.expiries[partition] = expiries

        var purges = state.purges.removeValue(forKey: partition) ?? TimeQueue()
        while let (time, id, entry) = purges.pop(dueBy: clock) {
            guard !entry.purged, entry.state != .pending, entry.partition == partition,
                  entry.deadlineMs + policy.retentionMs == time
            else { continue }
            entry.purged = true
            state.retained[id] = nil
        }
        state.purges[partition] = purges
        purgedUpTo[partition] = clock
    }

    // MARK: Output

    /// Emits the example of `prediction` (retained as `entry`) to `loop.labeled` partition `partition`.
    private mutating func emit(
        _ prediction: ServedPrediction, of entry: RetainedPrediction, partition: Int32, label: Bool, source: LabelSource,
        delayMs: Int64, value: Double?
    ) {
        let delay = Double(max(0, delayMs)) / 1000
        let reference = entry.offset >= 0
            ? PredictionReference(partition: entry.partition, offset: entry.offset, label: label, delaySeconds: delay, value: value)
            : nil
        outboxRows.append((partition, prediction.labeledExampleBytes(label: label, source: source, delaySeconds: delay, value: value),
                           reference))
        result.labeled.append(JoinedExample(
            prediction: prediction, label: label, labelSource: source, labelDelaySeconds: delay, value: value))
    }

    /// Lets go of the served records of the predictions this batch labeled (after it was stored).
    func releaseServed() {
        for entry in labeled { entry.served = nil }
    }

    // MARK: Storing

    /// Stores the batch's net changes, outbox, offsets, clocks and counters (inside the caller's transaction).
    mutating func store(in connection: Connection) throws {
        try storePredictions(connection)
        try storeHeld(connection)
        result.outbox.reserveCapacity(outboxRows.count)
        let first = state.nextOutboxSequence
        for (example, row) in zip(result.labeled, outboxRows) {
            result.outbox.append(OutboxEntry(
                sequence: state.nextOutboxSequence, partition: row.partition, requestId: example.requestId,
                labelSource: example.labelSource, entity: example.entity, bytes: row.bytes, reference: row.reference))
            state.nextOutboxSequence += 1
        }
        if !result.outbox.isEmpty {
            // A referenced example is stored without its bytes; recovery splices them again.
            let stored = result.outbox.map { entry in
                var entry = entry
                if entry.reference != nil { entry.bytes = [] }
                return entry
            }
            try JoinStore.insertOutboxBatch(stored, first: first, last: state.nextOutboxSequence - 1, connection)
        }
        try saveOffsets(connection)
        try saveClocksAndCounters(connection)
    }

    /// Writes the changed predictions: this batch's predictions that still wait for a label go into
    /// one `waiting_batches` row per partition (as references to `loop.predictions`), every
    /// resolution into one `resolved_batches` row per partition; rows all of whose predictions are
    /// purged are deleted.
    private mutating func storePredictions(_ connection: Connection) throws {
        // One row of each kind per partition, found by a scan from the last one used (a batch
        // holds few partitions, in runs), so no entry hashes anything.
        var waiting: [(partition: Int32, lastDeadlineMs: Int64, entries: [UInt8])] = []
        var resolved: [(partition: Int32, purgeMs: Int64, entries: [UInt8])] = []
        var lastWaiting = 0
        var lastResolved = 0
        for (id, entry) in changedPredictions where !entry.purged {
            if entry.batch == number, entry.state != .labeled {
                if lastWaiting >= waiting.count || waiting[lastWaiting].partition != entry.partition {
                    lastWaiting = waiting.firstIndex { $0.partition == entry.partition } ?? waiting.count
                    if lastWaiting == waiting.count { waiting.append((entry.partition, entry.deadlineMs, [])) }
                }
                WaitingCodec.encode(WaitingCodec.Entry(
                    deadlineMs: entry.deadlineMs, offset: entry.offset, requestId: id, entity: entry.entity,
                    eventTimeMs: entry.eventTimeMs, route: entry.route, score: entry.score, served: []),
                    into: &waiting[lastWaiting].entries)
                waiting[lastWaiting].lastDeadlineMs = max(waiting[lastWaiting].lastDeadlineMs, entry.deadlineMs)
            }
            if entry.state != .pending {
                let purgeMs = entry.deadlineMs + policy.retentionMs
                if lastResolved >= resolved.count || resolved[lastResolved].partition != entry.partition {
                    lastResolved = resolved.firstIndex { $0.partition == entry.partition } ?? resolved.count
                    if lastResolved == resolved.count { resolved.append((entry.partition, purgeMs, [])) }
                }
                ResolvedCodec.encode(id: id, entry, into: &resolved[lastResolved].entries)
                resolved[lastResolved].purgeMs = max(resolved[lastResolved].purgeMs, purgeMs)
            }
        }
        let insertWaiting = try connection.statement(
            "INSERT INTO waiting_batches(partition, last_deadline_ms, entries) VALUES (?1, ?2, ?3)")
        for batch in waiting {
            insertWaiting.reset()
            try insertWaiting.bind(Int64(batch.partition), at: 1)
            try insertWaiting.bind(batch.lastDeadlineMs, at: 2)
            try insertWaiting.bind(batch.entries, at: 3)
            try insertWaiting.run()
        }
        let purgeWaiting = try connection.statement("DELETE FROM waiting_batches WHERE partition = ?1 AND last_deadline_ms <= ?2")
        for (partition, clock) in purgedUpTo {
            purgeWaiting.reset()
            try purgeWaiting.bind(Int64(partition), at: 1)
            let (limit, overflow) = clock.subtractingReportingOverflow(policy.retentionMs)
            guard !overflow else { continue }
            try purgeWaiting.bind(limit, at: 2)
            try purgeWaiting.run()
        }
        let insert = try connection.statement("INSERT INTO resolved_batches(partition, purge_ms, entries) VALUES (?1, ?2, ?3)")
        for batch in resolved {
            insert.reset()
            try insert.bind(Int64(batch.partition), at: 1)
            try insert.bind(batch.purgeMs, at: 2)
            try insert.bind(batch.entries, at: 3)
            try insert.run()
        }
        let purge = try connection.statement("DELETE FROM resolved_batches WHERE partition = ?1 AND purge_ms <= ?2")
        for (partition, clock) in purgedUpTo {
            purge.reset()
            try purge.bind(Int64(partition), at: 1)
            try purge.bind(clock, at: 2)
            try purge.run()
        }
    }

    private func storeHeld(_ connection: Connection) throws {
        let insert = try connection.statement("""
            INSERT INTO early_outcomes(request_id, partition, event_time_ms, expires_ms, label, value, source, reviewer)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
            """)
        let delete = try connection.statement("DELETE FROM early_outcomes WHERE request_id = ?")
        for id in changedHeld {
            let isNew = newHeld.contains(id)
            guard let held = state.held[id] else {
                if !isNew {
                    delete.reset()
                    try delete.bind(id, at: 1)
                    try delete.run()
                }
                continue
            }
            // A held outcome never changes once held: only new ones are written.
            guard isNew else { continue }
            let outcome = held.outcome
            insert.reset()
            try insert.bind(id, at: 1)
            try insert.bind(Int64(held.partition), at: 2)
            try insert.bind(outcome.eventTimeMs, at: 3)
            try insert.bind(held.expiresMs, at: 4)
            try insert.bind(Int64(outcome.label ? 1 : 0), at: 5)
            if let value = outcome.value { try insert.bind(value, at: 6) } else { try insert.bindNull(at: 6) }
            try insert.bind(outcome.source.rawValue, at: 7)
            if let reviewer = outcome.reviewer { try insert.bind(reviewer, at: 8) } else { try insert.bindNull(at: 8) }
            try insert.run()
        }
    }

    private func saveOffsets(_ connection: Connection) throws {
        let upsert = try connection.statement("""
            INSERT INTO input_offsets(topic, partition, next_offset) VALUES (?1, ?2, ?3)
            ON CONFLICT(topic, partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)
            """)
        for (tp, next) in offsets {
            upsert.reset()
            try upsert.bind(tp.topic, at: 1)
            try upsert.bind(Int64(tp.partition), at: 2)
            try upsert.bind(next, at: 3)
            try upsert.run()
        }
    }

    private func saveClocksAndCounters(_ connection: Connection) throws {
        let clock = try connection.statement("""
            INSERT INTO clocks(partition, max_event_ms, prediction_ms) VALUES (?1, ?2, ?3)
            ON CONFLICT(partition) DO UPDATE SET max_event_ms = excluded.max_event_ms, prediction_ms = excluded.prediction_ms
            """)
        for partition in touched {
            clock.reset()
            try clock.bind(Int64(partition), at: 1)
            if let time = state.eventClocks[partition] { try clock.bind(time, at: 2) } else { try clock.bindNull(at: 2) }
            if let time = state.predictionClocks[partition] { try clock.bind(time, at: 3) } else { try clock.bindNull(at: 3) }
            try clock.run()
        }
        let counter = try connection.statement("""
            INSERT INTO counters(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value
            """)
        for field in JoinCounters.fields {
            counter.reset()
            try counter.bind(field.name, at: 1)
            try counter.bind(Int64(state.counters[keyPath: field.path]), at: 2)
            try counter.run()
        }
    }
}

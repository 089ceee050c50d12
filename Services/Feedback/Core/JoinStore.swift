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
    public var sequence: Int64
    /// The input partition; the example goes to the same partition of `loop.labeled` (co-partitioned).
    public var partition: Int32
    public var requestId: String
    public var labelSource: LabelSource
    public var entity: String
    public var bytes: [UInt8]

    /// The identity of one output: a request is emitted at most once per label source.
    public var outputKey: String { Self.outputKey(requestId: requestId, labelSource: labelSource.rawValue) }

    static func outputKey(requestId: String, labelSource: String) -> String { requestId + "\u{1f}" + labelSource }
}

/// What one applied batch produced.
public struct JoinBatchResult: Sendable {
    /// New predictions accepted into the join (for drift monitoring).
    public var predictions: [Prediction] = []
    /// Labeled examples emitted, in order.
    public var labeled: [LabeledExample] = []
    /// The same examples as stored in the outbox.
    public var outbox: [OutboxEntry] = []
    /// The counters after the batch.
    public var counters = JoinCounters()
    /// The latest event time seen over the batch's partitions, milliseconds.
    public var maxEventTimeMs: Int64?
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

/// The join state in SQLite: pending and resolved predictions, outcomes waiting for their
/// prediction, per-partition event-time clocks, input offsets, counters and the outbox of labeled
/// examples, all changed in one transaction per batch.
///
/// Because input offsets are stored in the same transaction as the state they produced, a restart
/// (even after `kill -9`) resumes exactly after the last applied batch; the outbox then holds any
/// example whose delivery was not yet confirmed (see ``LabeledPublisher``).
public final class JoinStore: Sendable {
    public let policy: JoinPolicy
    private let database: Database
    private let state: Mutex<JoinStoreCache>

    /// Opens (creating) the store at `path` (`:memory:` for a private in-memory store).
    public init(path: String, policy: JoinPolicy) throws(FeedbackError) {
        self.policy = policy
        do {
            database = try Database(path: path)
            try database.migrate(Self.migrations)
            let cache = try database.withConnection { connection -> JoinStoreCache in
                var cache = JoinStoreCache()
                let clocks = try connection.statement("SELECT partition, max_event_ms, prediction_ms FROM clocks")
                while try clocks.step() {
                    let partition = Int32(clocks.int64(at: 0))
                    cache.eventClocks[partition] = clocks.int64(at: 1)
                    if !clocks.isNull(at: 2) { cache.predictionClocks[partition] = clocks.int64(at: 2) }
                }
                let counters = try connection.statement("SELECT name, value FROM counters")
                while try counters.step() {
                    let name = counters.string(at: 0) ?? ""
                    if let field = JoinCounters.fields.first(where: { $0.name == name }) {
                        cache.counters[keyPath: field.path] = Int(counters.int64(at: 1))
                    }
                }
                return cache
            }
            state = Mutex(cache)
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
    ]

    /// Prediction states.
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

    /// Labeled examples stored but not yet confirmed delivered, oldest first.
    public func outbox() throws(FeedbackError) -> [OutboxEntry] {
        try read { connection in
            let statement = try connection.statement(
                "SELECT seq, partition, request_id, label_source, entity, body FROM outbox ORDER BY seq")
            var entries: [OutboxEntry] = []
            while try statement.step() {
                entries.append(OutboxEntry(
                    sequence: statement.int64(at: 0), partition: Int32(statement.int64(at: 1)),
                    requestId: statement.string(at: 2) ?? "",
                    labelSource: LabelSource(rawValue: statement.string(at: 3) ?? "") ?? .outcome,
                    entity: statement.string(at: 4) ?? "", bytes: statement.blob(at: 5) ?? []))
            }
            return entries
        }
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
        try read { connection in
            let statement = try connection.statement("""
                SELECT request_id, entity, partition, event_time_ms, deadline_ms, score, route, state
                FROM predictions WHERE request_id = ?
                """)
            try statement.bind(requestId, at: 1)
            return try statement.step() ? Self.pending(statement) : nil
        }
    }

    /// Pending predictions routed to review: the most uncertain (score closest to `threshold`) first,
    /// then the oldest.
    public func reviewQueue(threshold: Double, limit: Int) throws(FeedbackError) -> [PendingPrediction] {
        try read { connection in
            let statement = try connection.statement("""
                SELECT request_id, entity, partition, event_time_ms, deadline_ms, score, route, state
                FROM predictions WHERE route = 'review' AND state = 0
                ORDER BY abs(score - ?1), event_time_ms, request_id LIMIT ?2
                """)
            try statement.bind(threshold, at: 1)
            try statement.bind(Int64(limit), at: 2)
            var queue: [PendingPrediction] = []
            while try statement.step() { queue.append(Self.pending(statement)) }
            return queue
        }
    }

    /// The number of pending predictions routed to review.
    public func reviewQueueSize() throws(FeedbackError) -> Int {
        try read { connection in
            let statement = try connection.statement("SELECT count(*) FROM predictions WHERE route = 'review' AND state = 0")
            return try statement.step() ? Int(statement.int64(at: 0)) : 0
        }
    }

    private static func pending(_ statement: Statement) -> PendingPrediction {
        PendingPrediction(
            requestId: statement.string(at: 0) ?? "", entity: statement.string(at: 1) ?? "",
            partition: Int32(statement.int64(at: 2)), eventTimeMs: statement.int64(at: 3),
            deadlineMs: statement.int64(at: 4), score: statement.double(at: 5),
            route: Route(rawValue: statement.string(at: 6) ?? "") ?? .auto, isPending: statement.int64(at: 7) == 0)
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
        try write { connection in
            let delete = try connection.statement("DELETE FROM outbox WHERE seq = ?")
            for entry in entries {
                delete.reset()
                try delete.bind(entry.sequence, at: 1)
                try delete.run()
            }
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

    // MARK: - Applying a batch

    /// Applies a batch in one transaction: joins, deadlines, counters, input offsets and outbox.
    public func apply(_ records: [InputRecord]) throws(FeedbackError) -> JoinBatchResult {
        let policy = self.policy
        return try state.withLock { cache throws(FeedbackError) in
            var working = cache
            let result: JoinBatchResult
            do {
                result = try database.transaction { connection in
                    var batch = BatchApplication(connection: connection, policy: policy, cache: working)
                    try batch.apply(records)
                    working = batch.cache
                    return batch.result
                }
            } catch {
                throw FeedbackError(.storage, "cannot apply a batch to the join store: \(error)", isRetryable: true)
            }
            cache = working
            return result
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

// MARK: - One batch

/// The in-memory copy of the clocks and counters, changed only with the transaction that stores them.
struct JoinStoreCache: Sendable {
    /// The latest event time seen per partition on each input.
    var eventClocks: [Int32: Int64] = [:]
    var predictionClocks: [Int32: Int64] = [:]
    var counters = JoinCounters()

    /// The join clock of each partition: the event time both inputs have reached. Deadlines follow it,
    /// so an input running ahead (a replay reaches `loop.events` long before its predictions are made)
    /// never expires predictions or outcomes the other input has not caught up with.
    var clocks: [Int32: Int64] {
        predictionClocks.reduce(into: [:]) { clocks, entry in
            if let events = eventClocks[entry.key] { clocks[entry.key] = min(entry.value, events) }
        }
    }
}

/// The join logic of one batch, inside its transaction.
private struct BatchApplication {
    let connection: Connection
    let policy: JoinPolicy
    var cache: JoinStoreCache
    var result = JoinBatchResult()
    private var touched: Set<Int32> = []

    init(connection: Connection, policy: JoinPolicy, cache: JoinStoreCache) {
        self.connection = connection
        self.policy = policy
        self.cache = cache
    }

    mutating func apply(_ records: [InputRecord]) throws {
        var offsets: [TopicPartition: Int64] = [:]
        for record in records {
            let tp = TopicPartition(topic: record.topic, partition: record.partition)
            offsets[tp] = max(offsets[tp] ?? Int64.min, record.offset + 1)
            touched.insert(record.partition)
            switch record.input {
            case .prediction(let prediction):
                advancePredictions(record.partition, to: prediction.eventTimeMs)
                try accept(prediction, partition: record.partition)
            case .outcome(let outcome):
                advance(record.partition, to: outcome.eventTimeMs)
                try accept(outcome, partition: record.partition)
            case .clock(let time):
                advance(record.partition, to: time)
            case .malformed(_, let time):
                if let time { advance(record.partition, to: time) }
                cache.counters.malformed += 1
            case .ignored:
                break
            }
        }
        for partition in touched.sorted() { try expire(partition) }
        try saveOffsets(offsets)
        try saveClocksAndCounters()
        result.counters = cache.counters
        result.maxEventTimeMs = touched.compactMap { cache.clocks[$0] }.max()
    }

    private mutating func advance(_ partition: Int32, to time: Int64) {
        if time > cache.eventClocks[partition] ?? Int64.min { cache.eventClocks[partition] = time }
    }

    private mutating func advancePredictions(_ partition: Int32, to time: Int64) {
        if time > cache.predictionClocks[partition] ?? Int64.min { cache.predictionClocks[partition] = time }
    }

    // MARK: Predictions

    private mutating func accept(_ prediction: Prediction, partition: Int32) throws {
        let exists = try connection.statement("SELECT 1 FROM predictions WHERE request_id = ?")
        try exists.bind(prediction.requestId, at: 1)
        if try exists.step() {
            cache.counters.duplicatePredictions += 1
            return
        }
        cache.counters.predictions += 1
        result.predictions.append(prediction)
        let deadline = prediction.eventTimeMs + policy.deadlineMs
        let early = try connection.statement("""
            SELECT event_time_ms, label, value, source, reviewer FROM early_outcomes WHERE request_id = ?
            """)
        try early.bind(prediction.requestId, at: 1)
        if try early.step() {
            let outcome = Outcome(
                requestId: prediction.requestId, label: early.int64(at: 1) != 0, eventTimeMs: early.int64(at: 0),
                value: early.isNull(at: 2) ? nil : early.double(at: 2),
                source: LabelSource(rawValue: early.string(at: 3) ?? "") ?? .outcome, reviewer: early.string(at: 4))
            early.reset()
            let delete = try connection.statement("DELETE FROM early_outcomes WHERE request_id = ?")
            try delete.bind(prediction.requestId, at: 1)
            try delete.run()
            if outcome.eventTimeMs > deadline {
                cache.counters.late += 1
                cache.counters.lateEmitted += 1
            } else {
                cache.counters.joined += 1
            }
            try insert(prediction, partition: partition, deadline: deadline, state: .labeled, outcome: outcome)
            try emit(prediction, partition: partition, label: outcome.label, source: outcome.source,
                     delayMs: outcome.eventTimeMs - prediction.eventTimeMs, value: outcome.value)
            return
        }
        try insert(prediction, partition: partition, deadline: deadline, state: .pending, outcome: nil)
    }

    private func insert(
        _ prediction: Prediction, partition: Int32, deadline: Int64, state: JoinStore.State, outcome: Outcome?
    ) throws {
        let insert = try connection.statement("""
            INSERT INTO predictions(request_id, partition, entity, event_time_ms, deadline_ms, purge_ms, state,
                                    route, score, label, label_source, body)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
            """)
        try insert.bind(prediction.requestId, at: 1)
        try insert.bind(Int64(partition), at: 2)
        try insert.bind(prediction.entity, at: 3)
        try insert.bind(prediction.eventTimeMs, at: 4)
        try insert.bind(deadline, at: 5)
        try insert.bind(deadline + policy.retentionMs, at: 6)
        try insert.bind(state.rawValue, at: 7)
        try insert.bind(prediction.route.rawValue, at: 8)
        try insert.bind(prediction.score, at: 9)
        if let outcome {
            try insert.bind(Int64(outcome.label ? 1 : 0), at: 10)
            try insert.bind(outcome.source.rawValue, at: 11)
            try insert.bindNull(at: 12)
        } else {
            try insert.bindNull(at: 10)
            try insert.bindNull(at: 11)
            try insert.bind(prediction.bytes, at: 12)
        }
        try insert.run()
    }

    // MARK: Outcomes

    private mutating func accept(_ outcome: Outcome, partition: Int32) throws {
        let lookup = try connection.statement("""
            SELECT state, deadline_ms, label, label_source, body FROM predictions WHERE request_id = ?
            """)
        try lookup.bind(outcome.requestId, at: 1)
        guard try lookup.step() else {
            lookup.reset()
            try holdEarly(outcome, partition: partition)
            return
        }
        let state = JoinStore.State(rawValue: lookup.int64(at: 0)) ?? .labeled
        let deadline = lookup.int64(at: 1)
        let previousLabel = lookup.isNull(at: 2) ? nil : lookup.int64(at: 2) != 0
        let previousSource = lookup.string(at: 3).flatMap(LabelSource.init(rawValue:))
        let body = lookup.blob(at: 4)
        lookup.reset()

        switch state {
        case .labeled:
            compareWithReview(outcome, previousLabel: previousLabel, previousSource: previousSource)
            return
        case .pending:
            if outcome.eventTimeMs > deadline {
                cache.counters.late += 1
                cache.counters.lateEmitted += 1
            } else {
                cache.counters.joined += 1
            }
        case .expiredUnlabeled, .expiredDefaulted:
            cache.counters.late += 1
            cache.counters.lateEmitted += 1
        }
        guard let body, let prediction = try? Prediction(bytes: body) else {
            cache.counters.malformed += 1
            return
        }
        let update = try connection.statement("""
            UPDATE predictions SET state = 1, label = ?2, label_source = ?3, body = NULL WHERE request_id = ?1
            """)
        try update.bind(outcome.requestId, at: 1)
        try update.bind(Int64(outcome.label ? 1 : 0), at: 2)
        try update.bind(outcome.source.rawValue, at: 3)
        try update.run()
        try emit(prediction, partition: partition, label: outcome.label, source: outcome.source,
                 delayMs: outcome.eventTimeMs - prediction.eventTimeMs, value: outcome.value)
    }

    /// A second label for a labeled prediction: a duplicate, or ground truth judging a review verdict.
    private mutating func compareWithReview(_ outcome: Outcome, previousLabel: Bool?, previousSource: LabelSource?) {
        switch (previousSource, outcome.source) {
        case (.review, .outcome), (.outcome, .review):
            if previousLabel == outcome.label {
                cache.counters.reviewAgreements += 1
            } else {
                cache.counters.reviewDisagreements += 1
            }
        default:
            cache.counters.duplicates += 1
        }
    }

    private mutating func holdEarly(_ outcome: Outcome, partition: Int32) throws {
        let insert = try connection.statement("""
            INSERT INTO early_outcomes(request_id, partition, event_time_ms, expires_ms, label, value, source, reviewer)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(request_id) DO NOTHING
            """)
        try insert.bind(outcome.requestId, at: 1)
        try insert.bind(Int64(partition), at: 2)
        try insert.bind(outcome.eventTimeMs, at: 3)
        try insert.bind(outcome.eventTimeMs + policy.deadlineMs, at: 4)
        try insert.bind(Int64(outcome.label ? 1 : 0), at: 5)
        if let value = outcome.value { try insert.bind(value, at: 6) } else { try insert.bindNull(at: 6) }
        try insert.bind(outcome.source.rawValue, at: 7)
        if let reviewer = outcome.reviewer { try insert.bind(reviewer, at: 8) } else { try insert.bindNull(at: 8) }
        try insert.run()
        if connection.changes == 0 { cache.counters.duplicates += 1 }
    }

    // MARK: Deadlines and retention

    private mutating func expire(_ partition: Int32) throws {
        guard let clock = cache.clocks[partition] else { return }
        let due = try connection.statement("""
            SELECT request_id, body FROM predictions WHERE partition = ?1 AND state = 0 AND deadline_ms <= ?2
            ORDER BY deadline_ms, request_id
            """)
        try due.bind(Int64(partition), at: 1)
        try due.bind(clock, at: 2)
        var expired: [(String, [UInt8]?)] = []
        while try due.step() { expired.append((due.string(at: 0) ?? "", due.blob(at: 1))) }
        due.reset()
        if !expired.isEmpty {
            let mark = try connection.statement("UPDATE predictions SET state = ?2, label = ?3, label_source = ?4 WHERE request_id = ?1")
            for (requestId, body) in expired {
                mark.reset()
                try mark.bind(requestId, at: 1)
                if let label = policy.defaultLabel, let body, let prediction = try? Prediction(bytes: body) {
                    try mark.bind(JoinStore.State.expiredDefaulted.rawValue, at: 2)
                    try mark.bind(Int64(label ? 1 : 0), at: 3)
                    try mark.bind(LabelSource.default.rawValue, at: 4)
                    try mark.run()
                    cache.counters.defaulted += 1
                    try emit(prediction, partition: partition, label: label, source: .default,
                             delayMs: policy.deadlineMs, value: nil)
                } else {
                    try mark.bind(JoinStore.State.expiredUnlabeled.rawValue, at: 2)
                    try mark.bindNull(at: 3)
                    try mark.bindNull(at: 4)
                    try mark.run()
                    cache.counters.unlabeled += 1
                }
            }
        }
        let orphans = try connection.statement("DELETE FROM early_outcomes WHERE partition = ?1 AND expires_ms <= ?2")
        try orphans.bind(Int64(partition), at: 1)
        try orphans.bind(clock, at: 2)
        try orphans.run()
        cache.counters.orphans += connection.changes
        let purge = try connection.statement("DELETE FROM predictions WHERE partition = ?1 AND state <> 0 AND purge_ms <= ?2")
        try purge.bind(Int64(partition), at: 1)
        try purge.bind(clock, at: 2)
        try purge.run()
    }

    // MARK: Output and bookkeeping

    private mutating func emit(
        _ prediction: Prediction, partition: Int32, label: Bool, source: LabelSource, delayMs: Int64, value: Double?
    ) throws {
        let example = LabeledExample(
            prediction: prediction, label: label, labelSource: source,
            labelDelaySeconds: Double(max(0, delayMs)) / 1000, value: value)
        let bytes = example.bytes
        let insert = try connection.statement("""
            INSERT INTO outbox(partition, request_id, label_source, entity, body) VALUES (?1, ?2, ?3, ?4, ?5)
            """)
        try insert.bind(Int64(partition), at: 1)
        try insert.bind(prediction.requestId, at: 2)
        try insert.bind(source.rawValue, at: 3)
        try insert.bind(prediction.entity, at: 4)
        try insert.bind(bytes, at: 5)
        try insert.run()
        result.labeled.append(example)
        result.outbox.append(OutboxEntry(
            sequence: connection.lastInsertRowID, partition: partition, requestId: prediction.requestId,
            labelSource: source, entity: prediction.entity, bytes: bytes))
    }

    private func saveOffsets(_ offsets: [TopicPartition: Int64]) throws {
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

    private func saveClocksAndCounters() throws {
        let clock = try connection.statement("""
            INSERT INTO clocks(partition, max_event_ms, prediction_ms) VALUES (?1, ?2, ?3)
            ON CONFLICT(partition) DO UPDATE SET max_event_ms = excluded.max_event_ms, prediction_ms = excluded.prediction_ms
            """)
        for partition in touched {
            clock.reset()
            try clock.bind(Int64(partition), at: 1)
            try clock.bind(cache.eventClocks[partition] ?? Int64.min, at: 2)
            if let time = cache.predictionClocks[partition] { try clock.bind(time, at: 3) } else { try clock.bindNull(at: 3) }
            try clock.run()
        }
        let counter = try connection.statement("""
            INSERT INTO counters(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value
            """)
        for field in JoinCounters.fields {
            counter.reset()
            try counter.bind(field.name, at: 1)
            try counter.bind(Int64(cache.counters[keyPath: field.path]), at: 2)
            try counter.run()
        }
    }
}

import Contracts
@testable import Feedback
import Storage
import Testing

@Suite("predictions waiting across batches")
struct WaitingPredictionTests {
    /// The ids of the stored `pending_batches` rows, in order.
    static func pendingRows(_ path: String) throws -> [Int64] {
        try Database(path: path).withConnection { connection in
            let rows = try connection.statement("SELECT id FROM pending_batches ORDER BY id")
            var ids: [Int64] = []
            while try rows.step() { ids.append(rows.int64(at: 0)) }
            return ids
        }
    }

    @Test("are stored as one row per batch: reopened pending, labeled (a second outcome is a duplicate), expired and then emitted late byte for byte; the row goes once neither a prediction nor an unconfirmed example needs it")
    func reopenAndRelease() throws {
        let path = try temporaryDirectory("waiting") + "/join.sqlite"
        var driver = try JoinDriver(path: path, deadlineMs: hour, retentionMs: hour)
        let served = ["a", "b", "c"].map { prediction($0, at: 0, features: [FeatureValue(name: "x", value: 0.25)]) }
        try driver.apply(served.map { .prediction($0) })
        let firstRows = try Self.pendingRows(path)
        #expect(firstRows.count == 1, "three waiting predictions of one batch and partition share one row")
        try driver.apply([outcome("a", true, at: 10)])

        let reopened = try JoinStore(path: path, policy: driver.store.policy)
        #expect(try reopened.prediction(requestId: "a")?.isPending == false)
        #expect(try reopened.prediction(requestId: "b")?.isPending == true)
        let again = try reopened.apply([driver.record(outcome("a", true, at: 20))])
        #expect(again.labeled.isEmpty && again.counters.duplicates == 1)
        let expired = try reopened.apply([
            driver.record(.clock(eventTimeMs: hour + 1)), driver.record(.prediction(prediction("d", at: hour + 1))),
        ])
        #expect(expired.counters.unlabeled == 2, "b and c reached their deadline")

        let second = try JoinStore(path: path, policy: driver.store.policy)
        #expect(try second.prediction(requestId: "b")?.isPending == false)
        let late = try second.apply([driver.record(outcome("b", true, at: hour + 2))])
        #expect(late.labeled.map(\.requestId) == ["b"] && late.counters.lateEmitted == 1)
        let expected = try ServedPrediction(bytes: served[1].bytes)
            .labeledExampleBytes(label: true, source: .outcome, delaySeconds: Double(hour + 2) / 1000, value: nil)
        #expect(late.outbox.first?.bytes == expected, "the served record restored from the batch row splices the same example")
        #expect(try Self.pendingRows(path).contains(firstRows[0]), "c still waits for a late outcome")

        try second.apply([
            driver.record(.clock(eventTimeMs: 2 * hour + 1)), driver.record(.prediction(prediction("e", at: 2 * hour + 1))),
        ])
        #expect(try second.prediction(requestId: "c") == nil)
        #expect(try Self.pendingRows(path).contains(firstRows[0]), "the unconfirmed examples of a and b still hold the row")

        let third = try JoinStore(path: path, policy: driver.store.policy)
        let unconfirmed = try third.outbox()
        #expect(unconfirmed.map(\.requestId) == ["a", "b"])
        #expect(unconfirmed.allSatisfy { $0.reference == nil && $0.storedPrediction?.row == firstRows[0] })
        #expect(unconfirmed.last?.bytes == expected, "the outbox splices the example again from the stored prediction")
        try third.confirmDelivered(Array(unconfirmed.prefix(1)), reports: [])
        #expect(try Self.pendingRows(path).contains(firstRows[0]))
        try third.confirmDelivered(Array(unconfirmed.suffix(1)), reports: [])
        #expect(try !Self.pendingRows(path).contains(firstRows[0]), "confirming b released the last holder of the row")
        #expect(try third.prediction(requestId: "c") == nil && third.prediction(requestId: "d")?.isPending == false)
        #expect(try third.prediction(requestId: "e")?.isPending == true)
    }

    @Test("a late outcome supersedes the stored expiry: after a reopen the prediction is labeled, not expired again")
    func lateLabelSupersedesExpiry() throws {
        let path = try temporaryDirectory("supersede") + "/join.sqlite"
        var driver = try JoinDriver(path: path, deadlineMs: hour, defaultLabel: false, retentionMs: 4 * hour)
        try driver.apply([.prediction(prediction("a", at: 0))])
        let defaulted = try driver.apply([.clock(eventTimeMs: hour + 1), .prediction(prediction("b", at: hour + 1))])
        #expect(defaulted.labeled.map(\.labelSource) == [.default])
        let late = try driver.apply([outcome("a", true, at: hour + 5)])
        #expect(late.labeled.map(\.labelSource) == [.outcome])

        let reopened = try JoinStore(path: path, policy: driver.store.policy)
        let duplicate = try reopened.apply([driver.record(outcome("a", false, at: hour + 6))])
        #expect(duplicate.labeled.isEmpty && duplicate.counters.duplicates == 1)
        #expect(duplicate.counters.defaulted == 1 && duplicate.counters.lateEmitted == 1)
    }

    @Test("stored resolutions decode to what was encoded, for every state; a truncated blob is an error")
    func resolutionCodec() throws {
        let states: [(JoinStore.State, Bool?, LabelSource?)] = [
            (.labeled, true, .review), (.expiredUnlabeled, nil, nil), (.expiredDefaulted, false, .default),
        ]
        var blob: [UInt8] = []
        for (index, (state, label, source)) in states.enumerated() {
            let entry = RetainedPrediction(
                partition: 2, entity: "v", eventTimeMs: 5, deadlineMs: 9, state: state, route: .review, score: 0.25,
                label: label, labelSource: source, served: nil)
            ResolvedCodec.encode(id: "r\(index)", entry, into: &blob)
        }
        let decoded = try blob.withUnsafeBytes { try ResolvedCodec.decode($0, partition: 2) }
        #expect(decoded.map(\.id) == ["r0", "r1", "r2"])
        #expect(decoded.map(\.entry.state) == states.map(\.0))
        #expect(decoded.map(\.entry.label) == states.map(\.1))
        #expect(decoded.map(\.entry.labelSource) == states.map(\.2))
        #expect(throws: FeedbackError.self) { try blob.prefix(blob.count - 1).withUnsafeBytes { try ResolvedCodec.decode($0, partition: 2) } }
    }

    @Test("a store written with one row per prediction opens with the same state after the migration")
    func migration() throws {
        let path = try temporaryDirectory("migrate") + "/join.sqlite"
        let old = try Database(path: path)
        _ = try old.migrate(Array(JoinStore.migrations.dropLast()))
        let served = ["pending", "expired"].map { prediction($0, at: 0) }
        try old.transaction { connection in
            try connection.execute("""
                INSERT INTO clocks(partition, max_event_ms, prediction_ms) VALUES (0, \(hour + 1), \(hour + 1));
                INSERT INTO input_offsets(topic, partition, next_offset) VALUES ('\(JoinDriver.predictions)', 0, 3), ('\(JoinDriver.events)', 0, 1);
                """)
            let insert = try connection.statement("""
                INSERT INTO predictions(request_id, partition, entity, event_time_ms, deadline_ms, purge_ms, state, route, score,
                                        label, label_source, body)
                VALUES (?1, 0, 'nsw', 0, \(2 * hour), \(4 * hour), ?2, 'auto', 0.7, ?3, ?4, ?5)
                """)
            let rows: [(id: String, state: JoinStore.State, label: Bool?, source: String?, body: [UInt8]?)] = [
                ("pending", .pending, nil, nil, served[0].bytes), ("expired", .expiredUnlabeled, nil, nil, served[1].bytes),
                ("labeled", .labeled, true, "outcome", nil),
            ]
            for (id, state, label, source, body) in rows {
                insert.reset()
                try insert.bind(id, at: 1)
                try insert.bind(state.rawValue, at: 2)
                if let label { try insert.bind(Int64(label ? 1 : 0), at: 3) } else { try insert.bindNull(at: 3) }
                if let source { try insert.bind(source, at: 4) } else { try insert.bindNull(at: 4) }
                if let body { try insert.bind(body, at: 5) } else { try insert.bindNull(at: 5) }
                try insert.run()
            }
        }

        var driver = try JoinDriver(path: path, deadlineMs: 2 * hour, retentionMs: 2 * hour)
        driver.offsets = [JoinDriver.predictions: 3, JoinDriver.events: 1]
        #expect(try driver.store.prediction(requestId: "pending")?.isPending == true)
        #expect(try driver.store.prediction(requestId: "expired")?.isPending == false)
        let result = try driver.apply([outcome("pending", true, at: 10), outcome("expired", false, at: 20), outcome("labeled", true, at: 30)])
        #expect(result.labeled.map(\.requestId) == ["pending", "expired"])
        #expect(result.labeled.map(\.features) == served.map(\.features), "the served records moved over")
        #expect(result.counters.duplicates == 1 && result.counters.late == 1)
    }
}

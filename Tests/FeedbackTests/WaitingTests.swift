import Contracts
@testable import Feedback
import Kafka
import Storage
import Testing

@Suite("predictions waiting across batches")
struct WaitingPredictionTests {
    /// The ids of the stored `waiting_batches` rows, in order.
    static func waitingRows(_ path: String) throws -> [Int64] {
        try Database(path: path).withConnection { connection in
            let rows = try connection.statement("SELECT id FROM waiting_batches ORDER BY id")
            var ids: [Int64] = []
            while try rows.step() { ids.append(rows.int64(at: 0)) }
            return ids
        }
    }

    /// The bytes stored in `waiting_batches` rows.
    static func waitingBytes(_ path: String) throws -> Int64 {
        try Database(path: path).withConnection { connection in
            let sum = try connection.statement("SELECT coalesce(sum(length(entries)), 0) FROM waiting_batches")
            _ = try sum.step()
            return sum.int64(at: 0)
        }
    }

    @Test("are stored as one row per batch, as references: reopened pending (records read back from loop.predictions), labeled (a second outcome is a duplicate), expired and then emitted late byte for byte; the row goes once all its predictions are purged")
    func reopenAndPurge() throws {
        let path = try temporaryDirectory("waiting") + "/join.sqlite"
        var driver = try JoinDriver(path: path, deadlineMs: hour, retentionMs: hour)
        let served = ["a", "b", "c"].map { prediction($0, at: 0, features: [FeatureValue(name: "x", value: 0.25)]) }
        try driver.apply(served.map { .prediction($0) })
        let firstRows = try Self.waitingRows(path)
        #expect(firstRows.count == 1, "three waiting predictions of one batch and partition share one row")
        try driver.apply([outcome("a", true, at: 10)])

        let reopened = try driver.reopen()
        #expect(try reopened.prediction(requestId: "a")?.isPending == false)
        #expect(try reopened.prediction(requestId: "b")?.isPending == true)
        let again = try reopened.apply([driver.record(outcome("a", true, at: 20))])
        #expect(again.labeled.isEmpty && again.counters.duplicates == 1)
        let expired = try reopened.apply([
            driver.record(.clock(eventTimeMs: hour + 1)), driver.record(.prediction(prediction("d", at: hour + 1))),
        ])
        #expect(expired.counters.unlabeled == 2, "b and c reached their deadline")

        let second = try driver.reopen()
        #expect(try second.prediction(requestId: "b")?.isPending == false)
        let late = try second.apply([driver.record(outcome("b", true, at: hour + 2))])
        #expect(late.labeled.map(\.requestId) == ["b"] && late.counters.lateEmitted == 1)
        let expected = try ServedPrediction(bytes: served[1].bytes)
            .labeledExampleBytes(label: true, source: .outcome, delaySeconds: Double(hour + 2) / 1000, value: nil)
        #expect(late.outbox.first?.bytes == expected, "the served record read back from the topic splices the same example")
        #expect(late.outbox.first?.reference?.offset == 1, "stored as a reference to b in loop.predictions")
        #expect(try Self.waitingRows(path).contains(firstRows[0]), "c is retained for a late outcome until its purge")

        try second.apply([
            driver.record(.clock(eventTimeMs: 2 * hour + 1)), driver.record(.prediction(prediction("e", at: 2 * hour + 1))),
        ])
        #expect(try second.prediction(requestId: "c") == nil)
        #expect(try !Self.waitingRows(path).contains(firstRows[0]), "every prediction of the first batch is purged: its row is deleted")

        let third = try driver.reopen()
        let unconfirmed = try third.outbox()
        #expect(unconfirmed.map(\.requestId) == ["a", "b"])
        #expect(unconfirmed.map(\.reference?.offset) == [0, 1] && unconfirmed.allSatisfy(\.bytes.isEmpty),
                "unconfirmed examples refer to their predictions in the topic")
        #expect(try third.prediction(requestId: "c") == nil && third.prediction(requestId: "d")?.isPending == false)
        #expect(try third.prediction(requestId: "e")?.isPending == true)
    }

    @Test("a batch interleaving partitions stores one waiting row per partition, each with its own predictions, and a later batch resolves them per partition")
    func interleavedPartitions() throws {
        let path = try temporaryDirectory("waiting-partitions") + "/join.sqlite"
        var driver = try JoinDriver(path: path)
        let records = [("a", Int32(0)), ("b", 1), ("c", 0), ("d", 1), ("e", 1)].map { id, partition in
            driver.record(.prediction(prediction(id, at: 0)), partition: partition)
        }
        try driver.store.apply(records)
        #expect(try Self.waitingRows(path).count == 2)

        let reopened = try driver.reopen()
        for (id, partition) in [("a", Int32(0)), ("b", 1), ("c", 0), ("d", 1), ("e", 1)] {
            let stored = try reopened.prediction(requestId: id)
            #expect(stored?.isPending == true && stored?.partition == partition, "\(id)")
        }
        let labeled = try reopened.apply([
            driver.record(outcome("a", true, at: 10), partition: 0), driver.record(outcome("d", false, at: 10), partition: 1),
            driver.record(outcome("c", true, at: 10), partition: 0),
        ])
        #expect(labeled.labeled.map(\.requestId) == ["a", "d", "c"])
        let again = try driver.reopen()
        #expect(try ["a", "c", "d"].allSatisfy { try again.prediction(requestId: $0)?.isPending == false })
        #expect(try ["b", "e"].allSatisfy { try again.prediction(requestId: $0)?.isPending == true })
    }

    @Test("a prediction that expires and is purged within the batch that brought it leaves nothing stored")
    func purgedInItsOwnBatch() throws {
        let path = try temporaryDirectory("waiting-purged") + "/join.sqlite"
        var driver = try JoinDriver(path: path, deadlineMs: hour, retentionMs: hour)
        let result = try driver.apply([
            .prediction(prediction("a", at: 0)), .prediction(prediction("b", at: 3 * hour)), .clock(eventTimeMs: 3 * hour),
        ])
        #expect(result.counters.unlabeled == 1)
        #expect(try driver.store.prediction(requestId: "a") == nil)
        let reopened = try driver.reopen()
        #expect(try reopened.prediction(requestId: "a") == nil, "no stored resolution brings it back")
        #expect(try reopened.prediction(requestId: "b")?.isPending == true)
        #expect(try Self.waitingRows(path).count == 1, "only b waits")
        let resolvedRows = try Database(path: path).withConnection { connection in
            let count = try connection.statement("SELECT count(*) FROM resolved_batches")
            _ = try count.step()
            return count.int64(at: 0)
        }
        #expect(resolvedRows == 0, "nothing of a is left in resolved_batches")
        let single = try JoinDriver(path: try temporaryDirectory("waiting-single") + "/join.sqlite")
        var only = single
        try only.apply([.prediction(prediction("b", at: 3 * hour))])
        #expect(try Self.waitingBytes(path) == Self.waitingBytes(only.path), "a's entry is not in b's waiting row")
    }

    @Test("a waiting prediction costs a few dozen stored bytes, not its served record")
    func storedWithoutRecords() throws {
        let path = try temporaryDirectory("waiting-bytes") + "/join.sqlite"
        var driver = try JoinDriver(path: path, deadlineMs: hour, retentionMs: hour)
        let served = (0..<12).map { index in
            prediction("p\(index)", at: 0, features: (0..<40).map { FeatureValue(name: "feature_\($0)", value: Double(index) + 0.5) })
        }
        #expect(served.allSatisfy { $0.bytes.count > 1000 })
        try driver.apply(served.map { .prediction($0) })
        let stored = try Self.waitingBytes(path)
        #expect(stored > 0 && stored <= 12 * 64, "\(stored) bytes for 12 waiting predictions")
    }

    @Test("after a reopen the store asks for the records of pending and expired predictions, by offset; a record that is not the prediction stored there restores nothing; without its record an outcome is counted malformed, not emitted")
    func restoreServedRecords() throws {
        let path = try temporaryDirectory("restore") + "/join.sqlite"
        var driver = try JoinDriver(path: path, deadlineMs: hour, retentionMs: 4 * hour)
        try driver.apply((0..<4).map { .prediction(prediction("p\($0)", at: 0)) })
        try driver.apply([outcome("p1", true, at: 10)])
        try driver.apply([.clock(eventTimeMs: hour + 1), .prediction(prediction("q", at: hour + 1))])

        let reopened = try JoinStore(path: path, policy: driver.store.policy)
        #expect(reopened.predictionsToRestore() == [0: [0, 2, 3, 4]], "p1 is labeled: its record is not needed")
        let records = driver.predictionRecords
        let misplaced = [
            ConsumedRecord(topic: JoinDriver.predictions, partition: 0, offset: 2, key: nil, value: records[0].value),
            ConsumedRecord(topic: JoinDriver.predictions, partition: 1, offset: 0, key: nil, value: records[0].value),
            records[1],
        ]
        #expect(reopened.restoreServed(from: misplaced) == 0)
        #expect(reopened.restoreServed(from: records) == 4)
        #expect(reopened.predictionsToRestore().isEmpty)
        let late = try reopened.apply([driver.record(outcome("p2", false, at: hour + 2))])
        let expected = try ServedPrediction(bytes: records[2].value ?? [])
            .labeledExampleBytes(label: false, source: .outcome, delaySeconds: Double(hour + 2) / 1000, value: nil)
        #expect(late.outbox.map(\.bytes) == [expected])

        let unrestored = try JoinStore(path: path, policy: driver.store.policy)
        let lost = try unrestored.apply([driver.record(outcome("p3", true, at: hour + 3))])
        #expect(lost.labeled.isEmpty)
        #expect(lost.counters.malformed == 1 && lost.counters.lateEmitted == late.counters.lateEmitted,
                "counted once, as malformed, not as emitted")
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
        _ = try old.migrate(Array(JoinStore.migrations.dropLast(2)))
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

    @Test("a store of the pending_batches layout opens after the migration: a waiting prediction keeps its record inline, an unconfirmed example referring to a row gets its bytes")
    func waitingReferencesMigration() throws {
        let path = try temporaryDirectory("migrate-waiting") + "/join.sqlite"
        let old = try Database(path: path)
        _ = try old.migrate(Array(JoinStore.migrations.dropLast()))
        let served = ["w0", "w1"].map { prediction($0, at: 0) }
        let example = try ServedPrediction(bytes: served[1].bytes)
            .labeledExampleBytes(label: true, source: .outcome, delaySeconds: 0.01, value: nil)
        func integer<T: FixedWidthInteger>(_ value: T, _ output: inout [UInt8]) {
            withUnsafeBytes(of: value.littleEndian) { output.append(contentsOf: $0) }
        }
        func text(_ value: String, _ output: inout [UInt8]) {
            integer(UInt32(value.utf8.count), &output)
            output.append(contentsOf: value.utf8)
        }
        try old.transaction { connection in
            try connection.execute("""
                INSERT INTO clocks(partition, max_event_ms, prediction_ms) VALUES (0, 10, 10);
                INSERT INTO input_offsets(topic, partition, next_offset) VALUES ('\(JoinDriver.predictions)', 0, 2), ('\(JoinDriver.events)', 0, 1);
                """)
            var row: [UInt8] = []
            for record in served { WaitingCodec.encodeRecord(deadlineMs: hour, served: record.bytes, into: &row) }
            let insertRow = try connection.statement("INSERT INTO pending_batches(id, partition, entries) VALUES (7, 0, ?1)")
            try insertRow.bind(row, at: 1)
            try insertRow.run()
            // The earlier outbox layout: w1's example as a reference (kind 2) to row 7, position 1.
            var outbox: [UInt8] = []
            integer(Int64(0), &outbox)
            integer(Int32(0), &outbox)
            text("outcome", &outbox)
            text("w1", &outbox)
            text("nsw", &outbox)
            outbox.append(2)
            integer(Int64(7), &outbox)
            integer(Int32(1), &outbox)
            outbox.append(1)
            integer((0.01).bitPattern, &outbox)
            outbox.append(0)
            integer((0.0).bitPattern, &outbox)
            let insertOutbox = try connection.statement("INSERT INTO outbox_batches(first_seq, last_seq, entries) VALUES (0, 0, ?1)")
            try insertOutbox.bind(outbox, at: 1)
            try insertOutbox.run()
            var resolved: [UInt8] = []
            ResolvedCodec.encode(id: "w1", RetainedPrediction(
                partition: 0, entity: "nsw", eventTimeMs: 0, deadlineMs: hour, state: .labeled, route: .auto, score: 0.7,
                label: true, labelSource: .outcome, served: nil), into: &resolved)
            let insertResolved = try connection.statement(
                "INSERT INTO resolved_batches(partition, purge_ms, entries) VALUES (0, \(2 * hour), ?1)")
            try insertResolved.bind(resolved, at: 1)
            try insertResolved.run()
        }

        var driver = try JoinDriver(path: path, deadlineMs: hour, retentionMs: hour)
        driver.offsets = [JoinDriver.predictions: 2, JoinDriver.events: 1]
        #expect(try driver.store.outbox().map(\.bytes) == [example], "the example's bytes are spliced into the outbox")
        #expect(driver.store.predictionsToRestore().isEmpty, "the migrated record is kept inline")
        #expect(try driver.store.prediction(requestId: "w0")?.isPending == true)
        #expect(try driver.store.prediction(requestId: "w1")?.isPending == false)
        let joined = try driver.apply([outcome("w0", false, at: 20), outcome("w1", true, at: 30)])
        #expect(joined.labeled.map(\.features) == [served[0].features])
        #expect(joined.outbox.first?.reference == nil && joined.counters.duplicates == 1,
                "an example of a migrated prediction carries its bytes; w1 was labeled")
    }
}

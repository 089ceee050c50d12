import Contracts
@testable import Feedback
import Storage
import Testing

@Suite("compacting rows of waiting predictions")
struct CompactionTests {
    /// The bytes stored in `pending_batches` rows.
    static func pendingBytes(_ path: String) throws -> Int64 {
        try Database(path: path).withConnection { connection in
            let sum = try connection.statement("SELECT coalesce(sum(length(entries)), 0) FROM pending_batches")
            _ = try sum.step()
            return sum.int64(at: 0)
        }
    }

    /// The stored size of a row of `slots` predictions of which only those of `kept` keep their served record.
    static func compactedSize(slots: Int, kept: [Prediction]) -> Int64 {
        Int64(12 * slots + kept.map { $0.bytes.count }.reduce(0, +))
    }

    /// Predictions of about 1 KB each, all made at time 0.
    static func batch(_ prefix: String, count: Int) -> [Prediction] {
        (0..<count).map { index in
            prediction("\(prefix)\(index)", at: 0, features: (0..<40).map { FeatureValue(name: "feature_\($0)", value: Double(index) + 0.5) })
        }
    }

    @Test("once most predictions of a batch are labeled and their examples confirmed, the row keeps only the body still waiting; a late outcome for it after reopens emits the same bytes")
    func compactsToTheWaitingBody() throws {
        let path = try temporaryDirectory("compact") + "/join.sqlite"
        var driver = try JoinDriver(path: path, deadlineMs: hour, retentionMs: 4 * hour)
        let served = Self.batch("p", count: 12)
        try driver.apply(served.map { .prediction($0) })
        let full = try Self.pendingBytes(path)
        #expect(full == Self.compactedSize(slots: 12, kept: served))

        let labeled = try driver.apply(served.dropFirst().map { outcome($0.requestId, true, at: 10) })
        #expect(labeled.labeled.count == 11)
        #expect(try Self.pendingBytes(path) == full, "the unconfirmed examples still hold their records")
        try driver.store.confirmDelivered(labeled.outbox, reports: [])
        #expect(try Self.pendingBytes(path) == Self.compactedSize(slots: 12, kept: [served[0]]),
                "only the record of the prediction still waiting is kept")

        let reopened = try JoinStore(path: path, policy: driver.store.policy)
        #expect(try reopened.prediction(requestId: "p0")?.isPending == true)
        #expect(try reopened.prediction(requestId: "p1")?.isPending == false)
        let expired = try reopened.apply([
            driver.record(.clock(eventTimeMs: hour + 1)), driver.record(.prediction(prediction("q", at: hour + 1))),
        ])
        #expect(expired.counters.unlabeled == 1)

        let second = try JoinStore(path: path, policy: driver.store.policy)
        let late = try second.apply([driver.record(outcome("p0", false, at: hour + 2))])
        #expect(late.labeled.map(\.requestId) == ["p0"] && late.counters.lateEmitted == 1)
        let expected = try ServedPrediction(bytes: served[0].bytes)
            .labeledExampleBytes(label: false, source: .outcome, delaySeconds: Double(hour + 2) / 1000, value: nil)
        #expect(late.outbox.map(\.bytes) == [expected])
        let third = try JoinStore(path: path, policy: driver.store.policy)
        #expect(try third.outbox().map(\.bytes) == [expected], "the outbox splices the late example from the compacted row")
    }

    @Test("an unconfirmed example referring to a compacted row splices identical bytes after a reopen")
    func outboxReferenceSurvivesCompaction() throws {
        let path = try temporaryDirectory("compact-outbox") + "/join.sqlite"
        var driver = try JoinDriver(path: path, deadlineMs: hour, retentionMs: 4 * hour)
        let served = Self.batch("r", count: 8)
        try driver.apply(served.map { .prediction($0) })
        let first = try driver.apply([outcome("r3", true, at: 10)])
        let rest = try driver.apply(served.filter { $0.requestId != "r3" }.map { outcome($0.requestId, false, at: 20) })
        #expect(rest.labeled.count == 7)
        try driver.store.confirmDelivered(rest.outbox, reports: [])
        #expect(try Self.pendingBytes(path) == Self.compactedSize(slots: 8, kept: [served[3]]),
                "only the record the unconfirmed example of r3 refers to is kept")

        let reopened = try JoinStore(path: path, policy: driver.store.policy)
        let unconfirmed = try reopened.outbox()
        #expect(unconfirmed.map(\.requestId) == ["r3"])
        #expect(unconfirmed.first?.storedPrediction != nil, "the example refers to the compacted row")
        #expect(unconfirmed.map(\.bytes) == first.outbox.map(\.bytes))
        try reopened.confirmDelivered(unconfirmed, reports: [])
        #expect(try WaitingPredictionTests.pendingRows(path).isEmpty, "confirming the last holder deletes the compacted row")
    }

    @Test("a batch purging most expired predictions of a row compacts it in its own transaction; the one left still emits late after a reopen")
    func purgeCompacts() throws {
        let path = try temporaryDirectory("compact-purge") + "/join.sqlite"
        var driver = try JoinDriver(path: path, deadlineMs: hour, retentionMs: hour)
        var served = Self.batch("s", count: 7)
        served.append(prediction("late", at: hour / 2, features: served[0].features))
        try driver.apply(served.map { .prediction($0) })
        let next = prediction("t", at: 2 * hour + 1)
        try driver.apply([.clock(eventTimeMs: 2 * hour + 1), .prediction(next)])
        #expect(try driver.store.prediction(requestId: "s0") == nil, "purged")
        #expect(try Self.pendingBytes(path) == Self.compactedSize(slots: 8, kept: [served[7]]) + Self.compactedSize(slots: 1, kept: [next]),
                "the first row keeps only the expired prediction still retained; t waits in a row of its own")

        let reopened = try JoinStore(path: path, policy: driver.store.policy)
        let late = try reopened.apply([driver.record(outcome("late", true, at: 2 * hour + 2))])
        let expected = try ServedPrediction(bytes: served[7].bytes)
            .labeledExampleBytes(label: true, source: .outcome, delaySeconds: Double(2 * hour + 2 - hour / 2) / 1000, value: nil)
        #expect(late.outbox.map(\.bytes) == [expected])
    }
}

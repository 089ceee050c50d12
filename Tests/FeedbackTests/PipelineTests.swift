import Contracts
@testable import Feedback
import Kafka
import Storage
import Synchronization
import Testing

@Suite("outbox batches and the join pipeline")
struct PipelineTests {
    /// `count` predictions of partition 0 and their outcomes, as one batch of input records.
    static func pairs(_ range: Range<Int>, driver: inout JoinDriver) -> [InputRecord] {
        range.map { driver.record(.prediction(prediction("r\($0)", at: Int64($0) * 1000))) }
            + range.map { driver.record(outcome("r\($0)", $0 % 2 == 0, at: Int64($0) * 1000 + 500)) }
    }

    @Test("a batch whose transaction fails changes nothing: the reloaded state keeps the served records SQLite does not hold, so the batch applied again emits the same examples")
    func failedTransactionKeepsServedRecords() throws {
        let path = try temporaryDirectory("failed-batch") + "/join.sqlite"
        var driver = try JoinDriver(path: path)
        let served = [prediction("a", at: 0), prediction("b", at: 0)]
        try driver.apply(served.map { .prediction($0) })
        let outcomes = [driver.record(outcome("a", true, at: 10)), driver.record(outcome("b", false, at: 10))]
        // Storing the outbox fails; reading the store still works.
        try Database(path: path).withConnection { connection in
            try connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON outbox_batches BEGIN SELECT RAISE(ABORT, 'refused'); END")
        }
        #expect(throws: FeedbackError.self) { try driver.store.apply(outcomes) }
        #expect(try driver.store.prediction(requestId: "a")?.isPending == true)
        #expect(driver.store.counters.joined == 0)

        try Database(path: path).withConnection { try $0.execute("DROP TRIGGER refuse") }
        let again = try driver.store.apply(outcomes)
        #expect(again.labeled.map(\.requestId) == ["a", "b"] && again.counters.joined == 2 && again.counters.malformed == 0)
        let expected = try zip(served, [true, false]).map { prediction, label in
            try ServedPrediction(bytes: prediction.bytes)
                .labeledExampleBytes(label: label, source: .outcome, delaySeconds: 0.01, value: nil)
        }
        #expect(again.outbox.map(\.bytes) == expected)
    }

    @Test("a batch's outbox is one stored row: confirming part of it keeps exactly the rest across a reopen")
    func partialConfirmation() throws {
        let path = try temporaryDirectory("outbox-rows") + "/join.sqlite"
        var driver = try JoinDriver(path: path)
        let first = try driver.store.apply(Self.pairs(0..<4, driver: &driver))
        try driver.store.apply([driver.record(.prediction(prediction("late", at: 10_000)))])
        let second = try driver.store.apply([driver.record(outcome("late", true, at: hour))])
        let entries = first.outbox + second.outbox
        #expect(entries.map(\.requestId) == ["r0", "r1", "r2", "r3", "late"])
        #expect(entries.map(\.sequence) == [0, 1, 2, 3, 4])

        try driver.store.confirmDelivered([entries[0], entries[2]], reports: [])
        let reopened = try JoinStore(path: path, policy: driver.store.policy)
        let pending = try reopened.outbox()
        #expect(pending.map(\.requestId) == ["r1", "r3", "late"])
        #expect(pending.map(\.sequence) == [1, 3, 4])
        #expect(pending[0].reference == entries[1].reference && pending[0].bytes.isEmpty, "a reference is stored without bytes")
        #expect(pending[2].reference == entries[4].reference && pending[2].bytes.isEmpty,
                "an example whose prediction waited in an earlier batch is a reference too")

        try reopened.confirmDelivered(Array(pending.prefix(2)), reports: [])
        #expect(try reopened.outbox().map(\.requestId) == ["late"])
        let third = try reopened.apply(Self.pairs(10..<11, driver: &driver))
        #expect(third.outbox.map(\.sequence) == [5], "sequences continue after the stored ones")
        try reopened.confirmDelivered(pending.suffix(1) + third.outbox, reports: [])
        #expect(try reopened.outbox().isEmpty)
    }

    @Test("stored outbox entries decode to what was encoded; a truncated blob is an error, not a crash")
    func codec() throws {
        let entries = [
            OutboxEntry(sequence: 7, partition: 3, requestId: "é-1", labelSource: .review, entity: "nsw", bytes: [1, 2, 3]),
            OutboxEntry(sequence: 8, partition: 0, requestId: "r2", labelSource: .outcome, entity: "", bytes: [],
                        reference: PredictionReference(partition: 1, offset: 42, label: true, delaySeconds: 1.5, value: -2.25)),
            OutboxEntry(sequence: 9, partition: 0, requestId: "r3", labelSource: .default, entity: "v", bytes: [],
                        reference: PredictionReference(partition: 1, offset: 43, label: false, delaySeconds: 0, value: nil)),
        ]
        var blob: [UInt8] = []
        OutboxCodec.encode(entries, into: &blob)
        #expect(try blob.withUnsafeBytes { try OutboxCodec.decode($0) } == entries)
        for cut in [1, 9, blob.count / 2, blob.count - 1] {
            #expect(throws: FeedbackError.self) { try blob.prefix(cut).withUnsafeBytes { try OutboxCodec.decode($0) } }
        }
    }

    @Test("the pipeline applies, monitors and confirms every batch in order and marks it processed")
    func pipelineRuns() async throws {
        var driver = try JoinDriver()
        let records = (0..<5).map { batch in Self.consumed(Self.pairs(batch * 10..<batch * 10 + 10, driver: &driver)) }
        let monitor = try MonitorTests.monitor()
        let pipeline = JoinPipeline(
            decoder: InputDecoder(predictionsTopic: JoinDriver.predictions, policy: driver.store.policy), store: driver.store,
            monitor: monitor, batchesInFlight: 2)
        let output = RecordingOutput()
        try await pipeline.run(Batches(batches: records), output: output)
        #expect(output.log.withLock { $0 } == (0..<5).flatMap { ["applied 10", "processed 20 up to \($0 * 10 + 9)"] })
        #expect(try driver.store.outbox().isEmpty)
        #expect(driver.store.counters.joined == 50)
        let times = pipeline.stageTimes.current
        #expect(times.decode > 0 && times.apply > 0)
    }

    @Test("a failed delivery stops the pipeline: the batch stays in the outbox and is not marked processed")
    func pipelineStopsOnFailure() async throws {
        var driver = try JoinDriver()
        let records = [Self.consumed(Self.pairs(0..<3, driver: &driver))]
        let pipeline = JoinPipeline(
            decoder: InputDecoder(predictionsTopic: JoinDriver.predictions, policy: driver.store.policy), store: driver.store,
            monitor: try MonitorTests.monitor())
        let output = RecordingOutput(failing: true)
        await #expect(throws: FeedbackError.self) { try await pipeline.run(Batches(batches: records), output: output) }
        #expect(try driver.store.outbox().map(\.requestId) == ["r0", "r1", "r2"])
        #expect(output.log.withLock { $0 } == ["applied 3", "stopped"])
    }

    /// The records a consumer would have handed over for `inputs`.
    static func consumed(_ inputs: [InputRecord]) -> [ConsumedRecord] {
        inputs.map { record in
            switch record.input {
            case .prediction(let served):
                return ConsumedRecord(
                    topic: record.topic, partition: record.partition, offset: record.offset, key: nil, value: served.bytes)
            case .outcome(let outcome):
                let event = CloudEvent(
                    id: "o-\(record.offset)", source: "test", type: EventType.outcome.description, subject: "nsw",
                    time: Timestamp(seconds: outcome.eventTimeMs / 1000, nanoseconds: Int32(outcome.eventTimeMs % 1000) * 1_000_000),
                    data: .json(["requestId": .string(outcome.requestId), "label": .string(outcome.label ? "1" : "0")]))
                let message = KafkaBinding.encode(event, mode: .binary, key: .subject)
                return ConsumedRecord(
                    topic: record.topic, partition: record.partition, offset: record.offset, key: message.key, value: message.value,
                    headers: message.headers.map { KafkaHeader(key: $0.name, value: $0.value) })
            default:
                return ConsumedRecord(topic: record.topic, partition: record.partition, offset: record.offset, key: nil, value: nil)
            }
        }
    }

    struct Batches: AsyncSequence, Sendable {
        let batches: [[ConsumedRecord]]

        struct AsyncIterator: AsyncIteratorProtocol {
            var rest: ArraySlice<[ConsumedRecord]>
            mutating func next() async -> [ConsumedRecord]? { rest.popFirst() }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(rest: batches[...]) }
    }

    /// Acknowledges (or refuses) deliveries and records what the pipeline told it, in order.
    final class RecordingOutput: JoinOutput {
        let failing: Bool
        let log = Mutex<[String]>([])

        init(failing: Bool = false) {
            self.failing = failing
        }

        func send(_ outbox: [OutboxEntry]) async throws -> [DeliveryReport] {
            if failing { throw FeedbackError(.delivery, "refused") }
            return outbox.map { DeliveryReport(topic: "labeled", partition: $0.partition, offset: $0.sequence) }
        }

        func applied(_ result: JoinBatchResult) { log.withLock { $0.append("applied \(result.labeled.count)") } }

        func processed(_ records: [ConsumedRecord]) {
            log.withLock { $0.append("processed \(records.count) up to \(records.map(\.offset).max() ?? -1)") }
        }

        func stop() async { log.withLock { $0.append("stopped") } }
    }
}

@Suite("input offsets")
struct InputOffsetTests {
    @Test("records before the stored offsets are skipped: a batch fetched again after a seek changes nothing")
    func refetchedBatch() throws {
        let path = try temporaryDirectory("refetch") + "/join.sqlite"
        var driver = try JoinDriver(path: path)
        let batch = [driver.record(.prediction(prediction("a", at: 0))), driver.record(.prediction(prediction("b", at: 0))),
                     driver.record(outcome("a", true, at: 5))]
        let first = try driver.store.apply(batch)
        #expect(first.labeled.map(\.requestId) == ["a"])
        let again = try driver.store.apply(batch)
        #expect(again.labeled.isEmpty && again.predictions.isEmpty)
        #expect(again.counters == first.counters, "no duplicate counted for a record already applied")
        let reopened = try driver.reopen()
        let overlapping = try reopened.apply(Array(batch.suffix(1)) + [driver.record(outcome("b", false, at: 6))])
        #expect(overlapping.labeled.map(\.requestId) == ["b"], "after a restart too; the new record still applies")
        #expect(overlapping.counters.duplicates == 0 && overlapping.counters.joined == 2)
    }
}

@Suite("predictions labeled in their own batch")
struct ResolvedBatchTests {
    @Test("are stored per batch: known after a reopen (a second outcome is a duplicate), forgotten after their purge")
    func reloadAndPurge() throws {
        let path = try temporaryDirectory("resolved") + "/join.sqlite"
        var driver = try JoinDriver(path: path, deadlineMs: hour, retentionMs: hour)
        try driver.apply([.prediction(prediction("a", at: 0)), .prediction(prediction("b", at: 0)), outcome("a", true, at: 10)])

        let reopened = try JoinStore(path: path, policy: driver.store.policy)
        #expect(try reopened.prediction(requestId: "a")?.isPending == false)
        #expect(try reopened.prediction(requestId: "b")?.isPending == true)
        let again = try reopened.apply([driver.record(outcome("a", true, at: 20))])
        #expect(again.labeled.isEmpty && again.counters.duplicates == 1)
        let purged = try reopened.apply([
            driver.record(.clock(eventTimeMs: 2 * hour + 1)), driver.record(.prediction(prediction("c", at: 2 * hour + 1))),
        ])
        #expect(purged.counters.unlabeled == 1, "b reached its deadline")

        let second = try JoinStore(path: path, policy: driver.store.policy)
        #expect(try second.prediction(requestId: "a") == nil && second.prediction(requestId: "b") == nil)
        #expect(try second.prediction(requestId: "c")?.isPending == true)
        let late = try second.apply([driver.record(outcome("a", true, at: 2 * hour + 2))])
        #expect(late.labeled.isEmpty && late.counters.duplicates == 1, "after the purge it is not a duplicate any more")
    }
}

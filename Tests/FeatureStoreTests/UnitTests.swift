import Contracts
import Features
import Foundation
import Kafka
import Prometheus
import Storage
import Testing
@testable import FeatureStore

@Suite("changelog replay and partition state")
struct UnitTests {
    static func record(_ entity: String, _ value: UInt8, offset: Int64, batch: UInt64, index: Int, count: Int, next: Int64) -> ConsumedRecord {
        ConsumedRecord(
            topic: "t", partition: 0, offset: offset, key: Array(entity.utf8), value: [value],
            headers: ChangelogHeaders.make(batch: batch, index: index, count: count, inputNext: next))
    }

    /// Record `index` of a batch as the feature-store publishes it: headers on the last record only.
    static func published(_ entity: String, _ value: UInt8, offset: Int64, batch: UInt64, index: Int, count: Int, next: Int64) -> ConsumedRecord {
        ConsumedRecord(
            topic: "t", partition: 0, offset: offset, key: Array(entity.utf8), value: [value],
            headers: ChangelogHeaders.Maker(batch: batch, count: count, inputNext: next).headers(index: index))
    }

    @Test("only a batch's last record carries the batch headers; a request's tag stays on its record")
    func headersOnBatchEndOnly() {
        let maker = ChangelogHeaders.Maker(batch: 0xab, count: 3, inputNext: 42)
        #expect(maker.headers(index: 0).isEmpty)
        #expect(maker.headers(index: 1, requestOffset: 17) == [KafkaHeader(key: FeatureChangelogHeader.requestOffset, string: "17")])
        let end = maker.headers(index: 2)
        #expect(end == [KafkaHeader(key: FeatureChangelogHeader.batch, string: "ab/2/3"), KafkaHeader(key: FeatureChangelogHeader.inputNext, string: "42")])
        let position = FeatureChangelogHeader.position(
            batch: end.first { $0.key == FeatureChangelogHeader.batch }?.value,
            inputNext: end.first { $0.key == FeatureChangelogHeader.inputNext }?.value)
        #expect(position?.batch == 0xab)
        #expect(position?.inputNext == 42)
        #expect(position?.isLast == true)
    }

    @Test("a batch end completes the records before it; records after the last batch end are dropped")
    func replayCompletesAtBatchEnd() {
        var replay = ChangelogReplay(startingAt: 0)
        replay.add(Self.published("a", 1, offset: 0, batch: 7, index: 0, count: 2, next: 10))
        #expect(replay.latest.isEmpty)
        replay.add(Self.published("b", 1, offset: 1, batch: 7, index: 1, count: 2, next: 10))
        #expect(replay.latest == ["a": [1], "b": [1]])
        replay.add(Self.published("a", 2, offset: 2, batch: 8, index: 0, count: 3, next: 20))
        replay.add(Self.published("c", 2, offset: 3, batch: 8, index: 1, count: 3, next: 20))
        replay.finish()
        #expect(replay.latest == ["a": [1], "b": [1]])
        #expect(replay.inputNext == 10)
        #expect(replay.changelogNext == 4)
    }

    @Test("a dead writer's unfinished batch is kept with the later writer's batch that ends after it")
    func replayKeepsUnfinishedBatchWithTheNextEnd() {
        var replay = ChangelogReplay(startingAt: 5)
        replay.add(Self.published("a", 2, offset: 5, batch: 8, index: 0, count: 3, next: 20))
        replay.add(Self.published("c", 2, offset: 6, batch: 8, index: 1, count: 3, next: 20))
        replay.add(Self.published("a", 3, offset: 7, batch: 9, index: 0, count: 2, next: 20))
        replay.add(Self.published("b", 3, offset: 8, batch: 9, index: 1, count: 2, next: 20))
        replay.finish()
        #expect(replay.latest == ["a": [3], "b": [3], "c": [2]])
        #expect(replay.inputNext == 20)
        #expect(replay.changelogNext == 9)
    }

    @Test("logs with the batch headers on every record: complete batches set the resume offset; a trailing incomplete batch is dropped")
    func replayDropsTrailingIncompleteBatch() {
        var replay = ChangelogReplay(startingAt: 0)
        replay.add(Self.record("a", 1, offset: 0, batch: 7, index: 0, count: 2, next: 10))
        replay.add(Self.record("b", 1, offset: 1, batch: 7, index: 1, count: 2, next: 10))
        replay.add(Self.record("a", 2, offset: 2, batch: 8, index: 0, count: 2, next: 20))
        replay.finish()
        #expect(replay.latest == ["a": [1], "b": [1]])
        #expect(replay.inputNext == 10)
        #expect(replay.changelogNext == 3)
    }

    @Test("logs with the batch headers on every record: an incomplete batch followed by a later writer's batch is superseded, not dropped")
    func replayKeepsSupersededIncompleteBatch() {
        var replay = ChangelogReplay(startingAt: 5)
        replay.add(Self.record("a", 2, offset: 5, batch: 8, index: 0, count: 2, next: 20))
        replay.add(Self.record("a", 3, offset: 6, batch: 9, index: 0, count: 2, next: 20))
        replay.add(Self.record("b", 3, offset: 7, batch: 9, index: 1, count: 2, next: 20))
        replay.finish()
        #expect(replay.latest == ["a": [3], "b": [3]])
        #expect(replay.inputNext == 20)
        #expect(replay.changelogNext == 8)
    }

    @Test("state and input offset commit together; unacknowledged changes are listed until acknowledged")
    func storeCommitAndAcknowledge() throws {
        let directory = temporaryDirectory("partition-store")
        let store = try PartitionStore(directory: directory, partition: 3, historyInterval: 60)
        #expect(try store.progress() == PartitionProgress(inputNext: nil, ackedThrough: -1, changelogNext: 0))
        try store.commit([EntityChange(entity: "a", bytes: [1], latestMillis: 1000)], inputNext: 5)
        #expect(try store.progress().inputNext == 5)
        #expect(try store.unpublished().map(\.entity) == ["a"])
        try store.recordAcknowledged(through: 5, changelogNext: 1)
        #expect(try store.unpublished().isEmpty)
        #expect(try store.progress() == PartitionProgress(inputNext: 5, ackedThrough: 5, changelogNext: 1))
        #expect(try store.current("a") == [1])
        #expect(try store.current("b") == nil)
    }

    @Test("a commit updates the rows of known entities and inserts those of new ones")
    func storeUpdatesAndInserts() throws {
        let store = try PartitionStore(directory: temporaryDirectory("partition-update"), partition: 0, historyInterval: 60)
        try store.commit([EntityChange(entity: "a", bytes: [1], latestMillis: 1000)], inputNext: 1)
        try store.recordAcknowledged(through: 1, changelogNext: 1)
        try store.commit([
            EntityChange(entity: "a", bytes: [2], latestMillis: 2000), EntityChange(entity: "b", bytes: [3], latestMillis: 2000),
        ], inputNext: 2)
        #expect(try store.current("a") == [2])
        #expect(try store.current("b") == [3])
        #expect(try store.entityCount() == 2)
        #expect(try store.unpublished().map(\.entity).sorted() == ["a", "b"], "both rows carry the new batch's input offset")
    }

    /// An hourly count and the last price: the features the writer tests read.
    static func countAndLastPrice() throws -> FeatureSchema {
        try FeatureSchema(features: [
            FeatureSpec(name: "n", aggregation: .count, window: TimeSpan(seconds: 3600)),
            FeatureSpec(name: "p", field: "price", aggregation: .last),
        ], allowedLateness: TimeSpan(seconds: 3600))
    }

    /// What the writers of `schema` share, with a cache of 100 states.
    static func writeContext(_ schema: FeatureSchema) -> WriteContext {
        WriteContext(
            schema: schema, decoder: EventDecoder(schema: schema), featuresTopic: "f", stateCacheEntities: 100, logger: testLogger,
            metrics: FeatureStoreMetrics(registry: PrometheusCollectorRegistry()))
    }

    @Test("write lanes write a batch's partitions at the same time, each in offset order, with the states and changelog records of one lane")
    func writeLanes() async throws {
        let schema = try Self.countAndLastPrice()
        let context = Self.writeContext(schema)
        // Four partitions, their records interleaved; every event of an entity at the same time, so
        // only offset order decides which price is its last.
        var interleaved: [ConsumedRecord] = []
        for index in 0..<400 {
            let partition = Int32(index % 4)
            let entity = "e\(index % 12)"
            interleaved.append(ConsumedRecord(
                topic: "e", partition: partition, offset: Int64(index / 4), key: Array(entity.utf8),
                value: Array(#"{"price":\#(index)}"#.utf8),
                headers: [KafkaHeader(key: "ce_type", string: "loop.observation.v1"), KafkaHeader(key: "ce_time", string: "2024-01-01T00:00:00Z")]))
        }
        func run(lanes: Int) async throws -> (outcomes: [PartitionBatch], stores: [PartitionStore]) {
            let directory = temporaryDirectory("write-lanes")
            var jobs: [(writer: PartitionWriter, positions: [Int], batch: UInt64)] = []
            for partition in Int32(0)..<4 {
                let store = try PartitionStore(directory: directory, partition: partition, historyInterval: 3600)
                let positions = interleaved.indices.filter { interleaved[$0].partition == partition }
                jobs.append((PartitionWriter(store: store, context: context, entityCount: 0, inputNext: nil), positions, UInt64(partition)))
            }
            let outcomes = try await WriteLanes(count: lanes).submit(interleaved, jobs).outcomes().map { try $0.get() }
            return (outcomes, jobs.map(\.writer.store))
        }
        let (concurrent, concurrentStores) = try await run(lanes: 2)
        let (serial, serialStores) = try await run(lanes: 1)
        for partition in 0..<4 {
            let (outcome, expected) = (concurrent[partition], serial[partition])
            #expect(outcome.last.partition == Int32(partition) && outcome.last.offset == 99)
            #expect(outcome.written.inputNext == 100 && outcome.written.changes == 3)
            #expect(outcome.outgoing.map(\.key) == expected.outgoing.map(\.key))
            #expect(outcome.outgoing.map(\.value) == expected.outgoing.map(\.value))
            #expect(outcome.outgoing.map { $0.headers.map(\.value) } == expected.outgoing.map { $0.headers.map(\.value) })
            #expect(outcome.outgoing.allSatisfy { $0.partition == Int32(partition) })
            #expect(try concurrentStores[partition].progress().inputNext == 100)
            for entity in Set(interleaved.filter { $0.partition == Int32(partition) }.compactMap(\.key)).map({ String(decoding: $0, as: UTF8.self) }) {
                let bytes = try #require(try concurrentStores[partition].current(entity))
                #expect(bytes == (try serialStores[partition].current(entity)))
                let values = try EntityFeatureState(decoding: bytes, schema: schema).evaluate(asOf: 1_704_067_200)
                // The entity's events are at indexes i ≡ its number (mod 12) and ≡ the partition (mod 4); the last is below 400.
                let number = Int(entity.dropFirst())!
                let indexes = Array(stride(from: number, to: 400, by: 12))
                #expect(values[0] == Double(indexes.count))
                #expect(values[1] == Double(indexes[indexes.count - 1]), "the last price is the one of the highest offset")
            }
        }
    }

    @Test("batches queued on the lanes before earlier ones are written apply to each partition in the order they were queued")
    func queuedBatchesKeepPartitionOrder() async throws {
        let schema = try Self.countAndLastPrice()
        let context = Self.writeContext(schema)
        let directory = temporaryDirectory("queued-batches")
        let writers = try (Int32(0)..<2).map { partition in
            PartitionWriter(
                store: try PartitionStore(directory: directory, partition: partition, historyInterval: 3600), context: context,
                entityCount: 0, inputNext: nil)
        }
        let lanes = WriteLanes(count: 2)
        // Ten batches queued at once, each with one partition's share much larger than the other's.
        var queued: [LaneWrites] = []
        for batch in 0..<10 {
            let records = (0..<50).map { index in
                let partition = Int32(index < 45 ? batch % 2 : 1 - batch % 2)
                return ConsumedRecord(
                    topic: "e", partition: partition, offset: Int64(batch * 50 + index), key: Array("a\(partition)".utf8),
                    value: Array(#"{"price":\#(batch * 50 + index)}"#.utf8),
                    headers: [KafkaHeader(key: "ce_type", string: "loop.observation.v1"), KafkaHeader(key: "ce_time", string: "2024-01-01T00:00:00Z")])
            }
            let jobs = writers.map { writer in
                (writer: writer, positions: records.indices.filter { records[$0].partition == writer.partition }, batch: UInt64(batch))
            }
            queued.append(lanes.submit(records, jobs))
        }
        for writes in queued {
            for outcome in await writes.outcomes() { _ = try outcome.get() }
        }
        for writer in writers {
            let values = try EntityFeatureState(
                decoding: try #require(try writer.store.current("a\(writer.partition)")), schema: schema).evaluate(asOf: 1_704_067_200)
            #expect(values[0] == 250, "five batches of 45 and five of 5 events")
            // The last batch (9) gives partition 1 its first 45 events and partition 0 its last 5.
            #expect(values[1] == (writer.partition == 1 ? 494 : 499), "the price of the last event queued")
            #expect(try writer.store.progress().inputNext == (writer.partition == 1 ? 495 : 500))
        }
    }

    @Test("after a batch fails, its writer refuses every later batch with the same error, so no later offset is committed past it")
    func failedWriterRefusesLaterBatches() throws {
        let schema = try FeatureSchema(
            features: [FeatureSpec(name: "n", aggregation: .count, window: TimeSpan(seconds: 3600))], allowedLateness: TimeSpan(seconds: 3600))
        let context = Self.writeContext(schema)
        let store = try PartitionStore(directory: temporaryDirectory("writer-failure"), partition: 0, historyInterval: 3600)
        let writer = PartitionWriter(store: store, context: context, entityCount: 0, inputNext: nil)
        // With the entity table renamed away the first batch fails; renamed back, a writer that
        // had not failed would write the second.
        let database = try Database(path: store.path)
        try database.execute("ALTER TABLE entities RENAME TO entities_away")
        func batch(_ entity: String, offset: Int64) -> [ConsumedRecord] {
            [ConsumedRecord(
                topic: "e", partition: 0, offset: offset, key: Array(entity.utf8), value: Array("{}".utf8),
                headers: [KafkaHeader(key: "ce_type", string: "loop.observation.v1"), KafkaHeader(key: "ce_time", string: "2024-01-01T00:00:00Z")])]
        }
        var first: FeatureStoreError?
        do { _ = try writer.write(batch("broken", offset: 0), at: [0], batch: 1) } catch { first = error }
        let failure = try #require(first)
        try database.execute("ALTER TABLE entities_away RENAME TO entities")
        var second: FeatureStoreError?
        do { _ = try writer.write(batch("fine", offset: 1), at: [0], batch: 2) } catch { second = error }
        #expect(second?.description == failure.description)
        #expect(try store.progress().inputNext == nil)
        #expect(try store.current("fine") == nil)
        let reopened = PartitionWriter(store: store, context: context, entityCount: 0, inputNext: nil)
        _ = try reopened.write(batch("fine", offset: 1), at: [0], batch: 3)
        #expect(try store.current("fine") != nil, "a writer opened afresh (the service's restart) writes again")
    }

    @Test("records below the committed input offset are not applied again, also by a writer reopened on the store")
    func writerSkipsCommittedRecords() throws {
        let schema = try FeatureSchema(
            features: [FeatureSpec(name: "n", aggregation: .count, window: TimeSpan(seconds: 3600))], allowedLateness: TimeSpan(seconds: 3600))
        let context = Self.writeContext(schema)
        func records(_ offsets: Range<Int64>) -> [ConsumedRecord] {
            offsets.map { offset in
                ConsumedRecord(
                    topic: "e", partition: 0, offset: offset, key: Array("a".utf8), value: Array("{}".utf8),
                    headers: [KafkaHeader(key: "ce_type", string: "loop.observation.v1"), KafkaHeader(key: "ce_time", string: "2024-01-01T00:00:00Z")])
            }
        }
        func write(_ writer: PartitionWriter, _ offsets: Range<Int64>, batch: UInt64) throws -> PartitionBatch {
            let batchRecords = records(offsets)
            return try writer.write(batchRecords, at: Array(batchRecords.indices), batch: batch)
        }
        func count(_ store: PartitionStore) throws -> Double? {
            try EntityFeatureState(decoding: try #require(try store.current("a")), schema: schema).evaluate(asOf: 1_704_067_200)[0]
        }
        let store = try PartitionStore(directory: temporaryDirectory("writer-skip"), partition: 0, historyInterval: 3600)
        let writer = PartitionWriter(store: store, context: context, entityCount: 0, inputNext: nil)
        _ = try write(writer, 0..<5, batch: 1)
        let again = try write(writer, 0..<5, batch: 2)
        #expect(again.outgoing.isEmpty && again.written.changes == 0)
        #expect(try count(store) == 5)
        let overlapping = try write(writer, 3..<8, batch: 3)
        #expect(overlapping.written.changes == 1 && overlapping.written.inputNext == 8)
        #expect(try count(store) == 8, "only offsets 5, 6 and 7 are new")
        let reopened = PartitionWriter(store: store, context: context, entityCount: 1, inputNext: try store.progress().inputNext)
        _ = try write(reopened, 6..<9, batch: 4)
        #expect(try count(store) == 9, "only offset 8 is new")
        #expect(try store.progress().inputNext == 9)
    }

    @Test("a changelog ahead of the local state replaces it; one behind marks the entities to republish")
    func storeRestore() throws {
        let directory = temporaryDirectory("partition-restore")
        let store = try PartitionStore(directory: directory, partition: 0, historyInterval: 60)
        try store.commit([EntityChange(entity: "a", bytes: [1], latestMillis: 1000)], inputNext: 5)
        try store.recordAcknowledged(through: 5, changelogNext: 1)

        let behind = try store.restore([EntityChange(entity: "a", bytes: [9], latestMillis: 900)], inputNext: 4, changelogNext: 2)
        #expect(behind.resumeAt == 5 && !behind.replacedLocal)
        #expect(try store.current("a") == [1])
        #expect(try store.unpublished().map(\.entity) == ["a"])

        let ahead = try store.restore([EntityChange(entity: "a", bytes: [2], latestMillis: 2000)], inputNext: 9, changelogNext: 3)
        #expect(ahead.resumeAt == 9 && ahead.replacedLocal)
        #expect(try store.current("a") == [2])
        #expect(try store.unpublished().isEmpty)
        #expect(try store.progress() == PartitionProgress(inputNext: 9, ackedThrough: 9, changelogNext: 3))
    }

    @Test("history holds only the snapshots a batch took: the newest at or before a time, pruned by age")
    func storeHistory() throws {
        let directory = temporaryDirectory("partition-history")
        let store = try PartitionStore(directory: directory, partition: 0, historyInterval: 60)
        try store.commit([EntityChange(entity: "a", bytes: [1], latestMillis: 10_000)], inputNext: 1)
        #expect(try store.snapshot("a", atOrBefore: 20_000) == nil)
        try store.commit(
            [EntityChange(entity: "a", bytes: [3], latestMillis: 70_000)],
            snapshots: [EntityChange(entity: "a", bytes: [2], latestMillis: 50_000)], inputNext: 2)
        try store.commit(
            [EntityChange(entity: "a", bytes: [4], latestMillis: 130_000)],
            snapshots: [EntityChange(entity: "a", bytes: [3], latestMillis: 70_000)], inputNext: 3)
        #expect(try store.snapshot("a", atOrBefore: 5_000) == nil)
        #expect(try store.snapshot("a", atOrBefore: 55_000) == [2])
        #expect(try store.snapshot("a", atOrBefore: 65_000) == [2])
        #expect(try store.snapshot("a", atOrBefore: 70_000) == [3])
        #expect(try store.snapshot("a", atOrBefore: 200_000) == [3])
        try store.pruneHistory(before: 60_000)
        #expect(try store.snapshot("a", atOrBefore: 65_000) == nil)
        #expect(try store.snapshot("a", atOrBefore: 80_000) == [3])
    }

    @Test("the state cache hands each state out once and keeps two generations of capacity/2 entities")
    func stateCache() throws {
        let schema = try FeatureSchema(
            features: [FeatureSpec(name: "n", aggregation: .count, window: TimeSpan(seconds: 3600))], allowedLateness: TimeSpan(seconds: 60))
        func state(_ entity: String) -> EntityFeatureState { EntityFeatureState(entityID: entity, schema: schema) }
        var cache = StateCache(capacity: 4)
        cache.put("a", state("a"))
        cache.put("b", state("b"))
        cache.put("c", state("c"))  // a and b become the older generation
        #expect(cache.take("a")?.entityID == "a")
        #expect(cache.take("a") == nil, "a taken state is out of the cache until put back")
        cache.put("d", state("d"))
        cache.put("e", state("e"))  // c and d become the older generation; b is dropped
        #expect(cache.take("b") == nil)
        #expect(cache.take("c")?.entityID == "c")
        #expect(cache.take("e")?.entityID == "e")
        var off = StateCache(capacity: 0)
        off.put("a", state("a"))
        #expect(off.take("a") == nil)
    }

    @Test("the fast paths read the same event as the general parsers, and step aside for what they do not handle")
    func fastDecoding() throws {
        let schema = try FeatureSchema(features: [
            FeatureSpec(name: "p", field: "price", aggregation: .last, eventTypes: ["loop.observation.v1"]),
            FeatureSpec(name: "f", field: "flag", aggregation: .last, eventTypes: ["loop.observation.v1"]),
        ], allowedLateness: TimeSpan(seconds: 3600))
        let decoder = EventDecoder(schema: schema)
        #expect(scan(decoder, schema, #"{"price":-1.5e3,"flag":true,"name":"z\"q","n":null}"#) == nil)
        #expect(scan(decoder, schema, #" { "price" : -1.5e3 , "flag" : false , "name" : "z" } "#) == ["price": -1500, "flag": 0])
        #expect(scan(decoder, schema, #"{"price":{"nested":1}}"#) == nil)
        #expect(scan(decoder, schema, #"{"price":1,}"#) == nil)
        #expect(scan(decoder, schema, #"{"price":01}"#) == nil)
        #expect(scan(decoder, schema, #"{"price":1.}"#) == nil)
        #expect(scan(decoder, schema, #"{"price":1x}"#) == nil)
        #expect(scan(decoder, schema, "{}") == [:])
        // Through decode: a nested value takes the general parser and gives the same numbers.
        let record = ConsumedRecord(
            topic: "e", partition: 0, offset: 0, key: Array("x".utf8), value: Array(#"{"price":2,"meta":{"a":[1]},"flag":true}"#.utf8),
            headers: [KafkaHeader(key: "ce_type", string: "loop.observation.v1"), KafkaHeader(key: "ce_time", string: "2024-01-01T00:00:01+00:00")])
        guard let (_, event) = decode(decoder, schema, record) else {
            Issue.record("a nested object was not decoded by the general parser")
            return
        }
        #expect(event.values == ["price": 2, "flag": 1])
        #expect(event.time == 1_704_067_201)
    }

    @Test("an event's numbers read as Swift reads their text; what is not one JSON number or overflows reads as nil")
    func numbers() throws {
        let texts = ["0", "-0", "1", "-1", "0.5", "123.456", "-0.000123", "9007199254740993", "1e23", "2.5E+3", "0.1e1",
                     "12345678901234567", "1e-400", "1e400", "-1e400", "01", "1.", ".5", "+1", "1e", "--1", "0x10", "NaN", "", "1 "]
        for text in texts {
            let bytes = Array(text.utf8)
            let read = bytes.withUnsafeBufferPointer { EventDecoder.number($0) }
            let grammar = text.wholeMatch(of: /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/) != nil
            let expected = grammar ? Double(text).flatMap { $0.isFinite ? $0 : nil } : nil
            #expect(read?.bitPattern == expected?.bitPattern, "\(text)")
        }
    }

    @Test("events are filtered by ce_type before parsing and read from binary-mode records")
    func decoding() throws {
        let schema = try FeatureSchema(features: [
            FeatureSpec(name: "n", aggregation: .count, window: TimeSpan(seconds: 3600), eventTypes: ["loop.observation.v1"]),
            FeatureSpec(name: "p", field: "price", aggregation: .last, eventTypes: ["loop.observation.v1"]),
        ], allowedLateness: TimeSpan(seconds: 3600))
        let decoder = EventDecoder(schema: schema)
        func record(type: String, value: String, time: String? = "2024-01-01T00:00:01.5Z") -> ConsumedRecord {
            var headers = [KafkaHeader(key: "ce_type", string: type), KafkaHeader(key: "content-type", string: "application/json")]
            if let time { headers.append(KafkaHeader(key: "ce_time", string: time)) }
            return ConsumedRecord(topic: "e", partition: 0, offset: 0, key: Array("x".utf8), value: Array(value.utf8), headers: headers)
        }
        guard let (entity, event) = decode(decoder, schema, record(type: "loop.observation.v1", value: #"{"price":2,"flag":true,"name":"z"}"#)) else {
            Issue.record("an observation was not decoded")
            return
        }
        #expect(entity == "x")
        #expect(event.time == 1_704_067_201.5)
        #expect(event.values == ["price": 2])
        var row = [Double](repeating: 0, count: decoder.fieldCount)
        if case .ignored = row.withUnsafeMutableBufferPointer({ decoder.decode(record(type: "loop.outcome.v1", value: "not json"), values: $0) }) {} else {
            Issue.record("an outcome was not ignored before parsing")
        }
        if case .invalid = row.withUnsafeMutableBufferPointer({ decoder.decode(record(type: "loop.observation.v1", value: "{}", time: nil), values: $0) }) {} else {
            Issue.record("an event without time was not refused")
        }
        // A key that is not UTF-8: the entity is its repaired text, and so is the changelog key.
        var invalidKey = record(type: "loop.observation.v1", value: "{}")
        invalidKey.key = [0x61, 0xFF]
        guard let (repaired, _) = decode(decoder, schema, invalidKey) else {
            Issue.record("an event with a key that is not UTF-8 was not decoded")
            return
        }
        #expect(repaired == "a\u{FFFD}")
    }

    @Test("a GET's JSON is the canonical JSON of its values: keys in byte order, null for undefined and non-finite values, strings escaped")
    func valuesJSONIsCanonical() throws {
        let yaml = try String(contentsOf: packageRoot.appendingPathComponent("examples/elec2/loop.yaml"), encoding: .utf8)
        let config = try LoopConfig.parse(yaml: yaml, file: "loop.yaml")
        let schema = try FeatureSchema(settings: config.features)
        let queries = FeatureQueries(schema: schema, settings: config.features, registry: StoreRegistry())
        let count = schema.features.count
        let mixed: [Double?] = (0..<count).map { index -> Double? in
            index % 3 == 0 ? nil : Double(index) * -0.1 + 1e-7 * Double(index)
        }
        let special: [Double] = [.nan, .infinity, 0, -0.0, 1e300, 123]
        let extremes: [Double?] = (0..<count).map { index -> Double? in special[index % special.count] }
        let samples: [FeatureQueries.Values] = [
            FeatureQueries.Values(entity: "entity-1", asOf: 1_704_067_200.123, latestEventTime: 1_704_067_100.5, values: mixed),
            FeatureQueries.Values(entity: "a \"quoted\" \\ id\n", asOf: -1.5, latestEventTime: nil, values: extremes),
        ]
        for values in samples {
            var features: [(String, JSONValue)] = []
            for (spec, value) in zip(schema.features, values.values) {
                features.append((spec.name, value.map(JSONValue.double) ?? .null))
            }
            let latest: JSONValue = values.latestEventTime.map { JSONValue.string(FeatureQueries.timestamp($0)) } ?? .null
            let members: [(String, JSONValue)] = [
                ("entity", .string(values.entity)),
                ("asOf", .string(FeatureQueries.timestamp(values.asOf))),
                ("latestEventTime", latest),
                ("features", .object(JSONObject(features))),
            ]
            let expected = JSONValue.object(JSONObject(members))
            #expect(String(decoding: queries.json(values), as: UTF8.self) == expected.canonicalString)
        }
    }
}

// MARK: - Decoder helpers

/// What the flat-object scanner reads from `text`, by field name (absent fields left out), or
/// `nil` when it steps aside.
private func scan(_ decoder: EventDecoder, _ schema: FeatureSchema, _ text: String) -> [String: Double]? {
    var row = [Double](repeating: 0, count: decoder.fieldCount)
    let bytes = Array(text.utf8)
    let scanned = row.withUnsafeMutableBufferPointer { values in
        bytes.withUnsafeBufferPointer { decoder.scanFlatObject($0, into: values) }
    }
    return scanned ? named(row, schema) : nil
}

/// The entity and event `decoder` reads from `record`, values by field name, or `nil` when it is
/// not an event.
private func decode(_ decoder: EventDecoder, _ schema: FeatureSchema, _ record: ConsumedRecord) -> (String, FeatureEvent)? {
    var row = [Double](repeating: 0, count: decoder.fieldCount)
    guard case .event(let entity, let key, let time, let type) = row.withUnsafeMutableBufferPointer({ decoder.decode(record, values: $0) })
    else { return nil }
    #expect(key == Array(entity.utf8), "the changelog key is the entity's UTF-8 bytes")
    return (entity, FeatureEvent(time: time, type: type, values: named(row, schema)))
}

private func named(_ row: [Double], _ schema: FeatureSchema) -> [String: Double] {
    var values: [String: Double] = [:]
    for (field, value) in zip(schema.eventFields, row) where !value.isNaN { values[field] = value }
    return values
}

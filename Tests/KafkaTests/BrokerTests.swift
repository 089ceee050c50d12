import Foundation
import Kafka
import Synchronization
import TestSupport
import Testing

/// Records rebalance events for assertions.
final class RecordingHandler: RebalanceHandler {
    private let state = Mutex<(assigned: Set<TopicPartition>, everAssigned: Int, revoked: Int)>(([], 0, 0))

    var owned: Set<TopicPartition> { state.withLock { $0.assigned } }
    var revocations: Int { state.withLock { $0.revoked } }

    func assigned(_ partitions: [TopicPartition]) async -> [TopicPartition: Int64]? {
        state.withLock {
            $0.assigned.formUnion(partitions)
            $0.everAssigned += partitions.count
        }
        return nil
    }

    func revoked(_ partitions: [TopicPartition]) async {
        state.withLock {
            $0.assigned.subtract(partitions)
            $0.revoked += partitions.count
        }
    }
}

/// Values seen by several consumers.
final class SeenValues: Sendable {
    private let state = Mutex<Set<String>>([])
    var values: Set<String> { state.withLock { $0 } }
    func insert(_ values: [String]) { state.withLock { $0.formUnion(values) } }
}

/// Collects records from a consumer's batches until a condition holds, marking them processed.
func consume(
    _ consumer: KafkaConsumer, until done: @escaping @Sendable ([ConsumedRecord]) -> Bool,
    markProcessed: Bool = true, deadline: Duration = .seconds(30)
) async throws -> [ConsumedRecord] {
    try await withDeadline(deadline, "consuming") {
        var all: [ConsumedRecord] = []
        for try await batch in consumer.batches(maxRecords: 5000, maxWait: .milliseconds(50)) {
            all.append(contentsOf: batch)
            if markProcessed { consumer.markProcessed(batch) }
            if done(all) { break }
        }
        return all
    }
}

@Suite("Kafka against Tansu", .serialized)
struct BrokerTests {
    @Test("100k records with keys and headers round-trip intact")
    func roundTrip() async throws {
        let broker = try await Broker.shared()
        let topic = try await makeTopic(broker, "roundtrip", partitions: 4)
        let config = KafkaConfig(brokers: broker.bootstrap)
        let producer = try KafkaProducer(config: config, logger: testLogger)
        let total = 100_000
        for chunk in stride(from: 0, to: total, by: 20_000) {
            let records = (chunk..<chunk + 20_000).map { i in
                OutgoingRecord(
                    topic: topic, key: bytes("key-\(i)"), value: bytes("value-\(i)"),
                    headers: [KafkaHeader(key: "index", string: "\(i)"), KafkaHeader(key: "empty", value: nil)])
            }
            let reports = try await producer.send(records)
            #expect(reports.count == records.count)
        }

        let consumer = try KafkaConsumer(
            config: config, groupID: broker.uniqueTopic("roundtrip-group"), consumer: quickConsumerSettings(),
            logger: testLogger)
        try consumer.subscribe(topics: [topic])
        let records = try await consume(consumer, until: { $0.count >= total }, deadline: .seconds(60))
        await consumer.close()

        #expect(records.count == total)
        var seen = [Bool](repeating: false, count: total)
        var bad = 0
        for record in records {
            guard let key = text(record.key), key.hasPrefix("key-"), let i = Int(key.dropFirst(4)), i < total,
                text(record.value) == "value-\(i)", record.headers.count == 2,
                text(record.header("index")?.value) == "\(i)", record.header("empty")?.value == nil,
                record.header("empty") != nil, record.topic == topic, record.timestamp != nil
            else {
                bad += 1
                continue
            }
            seen[i] = true
        }
        #expect(bad == 0)
        #expect(seen.allSatisfy { $0 })
    }

    @Test("a new consumer of the group resumes exactly after the committed records")
    func commitAndResume() async throws {
        let broker = try await Broker.shared()
        let topic = try await makeTopic(broker, "resume", partitions: 1)
        let config = KafkaConfig(brokers: broker.bootstrap)
        let producer = try KafkaProducer(config: config, logger: testLogger)
        _ = try await producer.send((0..<1000).map { OutgoingRecord(topic: topic, value: bytes("\($0)")) })
        let group = broker.uniqueTopic("resume-group")

        let first = try KafkaConsumer(config: config, groupID: group, consumer: quickConsumerSettings(), logger: testLogger)
        try first.subscribe(topics: [topic])
        let fetched = try await consume(first, until: { $0.count >= 400 }, markProcessed: false)
        let processed = fetched.prefix(400)
        #expect(processed.map(\.offset) == Array(0..<400))
        first.markProcessed(processed)
        try await first.commit()
        await first.close()

        let admin = try KafkaAdmin(config: config, logger: testLogger)
        #expect(try await admin.committedOffsets(group: group, topics: [topic]) == [TopicPartition(topic: topic, partition: 0): 400])
        #expect(try await admin.lag(group: group, topic: topic).total == 600)

        let second = try KafkaConsumer(config: config, groupID: group, consumer: quickConsumerSettings(), logger: testLogger)
        try second.subscribe(topics: [topic])
        let rest = try await consume(second, until: { $0.count >= 600 })
        await second.close()
        #expect(rest.map(\.offset) == Array(400..<1000))
        #expect(rest.map { text($0.value)! } == (400..<1000).map { "\($0)" })
        #expect(try await admin.lag(group: group, topic: topic).total == 0)
    }

    @Test("two consumers of one group split the partitions and lose nothing", arguments: ["cooperative-sticky", "range"])
    func rebalance(strategy: String) async throws {
        let broker = try await Broker.shared()
        let topic = try await makeTopic(broker, "rebalance", partitions: 4)
        let config = KafkaConfig(brokers: broker.bootstrap)
        let producer = try KafkaProducer(config: config, logger: testLogger)
        let group = broker.uniqueTopic("rebalance-group")
        let seen = SeenValues()

        func run(_ consumer: KafkaConsumer) -> Task<Void, any Error> {
            Task {
                for try await batch in consumer.batches(maxRecords: 500, maxWait: .milliseconds(20)) {
                    seen.insert(batch.map { text($0.value)! })
                    consumer.markProcessed(batch)
                }
            }
        }
        func waitUntil(_ what: String, _ condition: @escaping @Sendable () -> Bool) async throws {
            try await withDeadline(.seconds(30), what) {
                while !condition() { try await Task.sleep(for: .milliseconds(20)) }
            }
        }

        _ = try await producer.send((0..<2000).map { OutgoingRecord(topic: topic, key: bytes("k\($0)"), value: bytes("\($0)")) })
        let handlerA = RecordingHandler()
        let consumerA = try KafkaConsumer(config: config, groupID: group, consumer: quickConsumerSettings(strategy: strategy), logger: testLogger)
        try consumerA.subscribe(topics: [topic], rebalance: handlerA)
        let taskA = run(consumerA)
        try await waitUntil("A owns all partitions") { handlerA.owned.count == 4 }

        let handlerB = RecordingHandler()
        let consumerB = try KafkaConsumer(config: config, groupID: group, consumer: quickConsumerSettings(strategy: strategy), logger: testLogger)
        try consumerB.subscribe(topics: [topic], rebalance: handlerB)
        let taskB = run(consumerB)
        try await waitUntil("both own partitions") {
            !handlerA.owned.isEmpty && !handlerB.owned.isEmpty && handlerA.owned.count + handlerB.owned.count == 4
        }
        #expect(handlerA.revocations > 0)
        #expect(handlerA.owned.isDisjoint(with: handlerB.owned))

        _ = try await producer.send((2000..<4000).map { OutgoingRecord(topic: topic, key: bytes("k\($0)"), value: bytes("\($0)")) })
        try await waitUntil("all 4000 records seen") { seen.values.count == 4000 }
        await consumerA.close()
        await consumerB.close()
        _ = try await taskA.value
        _ = try await taskB.value
        #expect(seen.values == Set((0..<4000).map { "\($0)" }))
    }

    @Test("tombstones and empty values round-trip as nil and []")
    func tombstones() async throws {
        let broker = try await Broker.shared()
        let topic = try await makeTopic(broker, "tombstone", partitions: 1)
        let config = KafkaConfig(brokers: broker.bootstrap)
        let producer = try KafkaProducer(config: config, logger: testLogger)
        _ = try await producer.send([
            OutgoingRecord(topic: topic, key: bytes("a"), value: bytes("alive")),
            OutgoingRecord(topic: topic, key: bytes("a"), value: nil),
            OutgoingRecord(topic: topic, key: bytes("b"), value: []),
            OutgoingRecord(topic: topic, key: nil, value: bytes("no key")),
        ])
        let reader = try PartitionReader(config: config, partitions: [TopicPartition(topic: topic, partition: 0)], logger: testLogger)
        var records: [ConsumedRecord] = []
        try await withDeadline(.seconds(20), "reading tombstones") {
            var collected: [ConsumedRecord] = []
            for try await event in reader.events() {
                if case .records(let batch) = event { collected.append(contentsOf: batch) }
                if case .caughtUp = event { break }
            }
            return collected
        }.forEach { records.append($0) }
        await reader.close()
        #expect(records.count == 4)
        #expect(records.map(\.value) == [bytes("alive"), nil, [], bytes("no key")])
        #expect(records.map(\.key) == [bytes("a"), bytes("a"), bytes("b"), nil])
    }

    @Test("the partition reader signals caught-up at the starting end, then keeps following")
    func partitionReader() async throws {
        let broker = try await Broker.shared()
        let topic = try await makeTopic(broker, "reader", partitions: 3)
        let config = KafkaConfig(brokers: broker.bootstrap)
        let producer = try KafkaProducer(config: config, logger: testLogger)
        // Partition 2 stays empty: caught-up must not wait for it.
        _ = try await producer.send((0..<500).map { OutgoingRecord(topic: topic, value: bytes("\($0)"), partition: Int32($0 % 2)) })
        let partitions = (0..<3).map { TopicPartition(topic: topic, partition: Int32($0)) }
        let reader = try PartitionReader(
            config: config, partitions: partitions, offsets: [partitions[1]: 200], logger: testLogger)

        let (beforeCaughtUp, after) = try await withDeadline(.seconds(20), "reader") {
            var before: [ConsumedRecord] = []
            var after: [ConsumedRecord] = []
            var caughtUp = false
            for try await event in reader.events(maxRecords: 100, maxWait: .milliseconds(20)) {
                switch event {
                case .records(let batch):
                    if caughtUp { after.append(contentsOf: batch) } else { before.append(contentsOf: batch) }
                case .caughtUp:
                    caughtUp = true
                    _ = try await producer.send((500..<510).map { OutgoingRecord(topic: topic, value: bytes("\($0)"), partition: 2) })
                }
                if after.count >= 10 { break }
            }
            return (before, after)
        }
        await reader.close()
        // Partition 0: offsets 0..<250; partition 1 from offset 200: 200..<250.
        #expect(beforeCaughtUp.filter { $0.partition == 0 }.map(\.offset) == Array(0..<250))
        #expect(beforeCaughtUp.filter { $0.partition == 1 }.map(\.offset) == Array(200..<250))
        #expect(after.map { text($0.value)! } == (500..<510).map { "\($0)" })
    }

    @Test("the assignable reader catches up each partition added later, and one removed and added again is read afresh")
    func assignableReader() async throws {
        let broker = try await Broker.shared()
        let topic = try await makeTopic(broker, "assignable", partitions: 3)
        let config = KafkaConfig(brokers: broker.bootstrap)
        let producer = try KafkaProducer(config: config, logger: testLogger)
        _ = try await producer.send((0..<300).map { OutgoingRecord(topic: topic, value: bytes("\($0)"), partition: Int32($0 % 3)) })
        let partitions = (0..<3).map { TopicPartition(topic: topic, partition: Int32($0)) }
        let reader = try AssignableReader(config: config, logger: testLogger)
        try reader.add([partitions[0]])

        // Per partition, the offsets read before its catch-up, in the order read, for each add.
        let reads = try await withDeadline(.seconds(30), "assignable reader") {
            var reads: [[Int64]] = []
            var current: [TopicPartition: [Int64]] = [:]
            var step = 0
            for try await event in reader.events(maxRecords: 40, maxWait: .milliseconds(20)) {
                switch event {
                case .records(let batch):
                    for record in batch { current[record.topicPartition, default: []].append(record.offset) }
                case .caughtUp(let caughtUp):
                    for partition in caughtUp { reads.append(current.removeValue(forKey: partition) ?? []) }
                    step += 1
                    switch step {
                    case 1:
                        // Added while partition 0 is being followed: read from offset 50.
                        try reader.add([partitions[1]], offsets: [partitions[1]: 50])
                    case 2:
                        try reader.remove([partitions[0]])
                        try reader.add([partitions[0], partitions[2]])
                    default:
                        break
                    }
                }
                if reads.count == 4 { break }
            }
            return reads
        }
        await reader.close()
        #expect(reads.count == 4)
        #expect(reads.first == Array(0..<100))
        #expect(reads.dropFirst().first == Array(50..<100))
        #expect(reads.dropFirst(2).sorted { $0.count < $1.count } == [Array(0..<100), Array(0..<100)])
    }

    @Test("creating topics is idempotent and admin reads describe and watermarks")
    func admin() async throws {
        let broker = try await Broker.shared()
        let admin = try KafkaAdmin(config: KafkaConfig(brokers: broker.bootstrap), logger: testLogger)
        let topic = broker.uniqueTopic("admin")
        let spec = TopicSpec(name: topic, partitions: 3, config: ["cleanup.policy": "compact"])
        #expect(try await admin.createTopics([spec]) == [topic])
        #expect(try await admin.createTopics([spec]) == [])
        let description = try await admin.describeTopics([topic])
        #expect(description.first?.partitions.map(\.id) == [0, 1, 2])

        let producer = try KafkaProducer(config: KafkaConfig(brokers: broker.bootstrap), logger: testLogger)
        _ = try await producer.send((0..<7).map { _ in OutgoingRecord(topic: topic, value: bytes("x"), partition: 1) })
        let (low, high) = try await admin.watermarks(topic: topic, partition: 1)
        #expect(low == 0)
        #expect(high == 7)
        let lag = try await admin.lag(group: broker.uniqueTopic("nobody"), topic: topic)
        #expect(lag.total == 7)
        await #expect(throws: KafkaError.self) { _ = try await admin.describeTopics([broker.uniqueTopic("missing")]) }
    }

    @Test("an unreachable broker gives a clear error within 10 seconds")
    func unreachableBroker() async throws {
        var settings = ProducerSettings()
        settings.deliveryTimeout = .seconds(3)
        let producer = try KafkaProducer(config: KafkaConfig(brokers: "127.0.0.1:1"), producer: settings, logger: testLogger)
        let start = ContinuousClock.now
        do {
            _ = try await producer.send(OutgoingRecord(topic: "unreachable", value: bytes("x")))
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .timedOut)
            #expect(error.reason.contains("127.0.0.1:1"))
            #expect(error.isRetriable)
        }
        #expect(ContinuousClock.now - start < .seconds(10))
    }
}

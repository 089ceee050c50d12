import Contracts
import Foundation
@testable import Ingest
import Kafka
import Logging
import Prometheus
import ServiceKit
import Testing

/// The raw path's pipeline: how a consumed batch is split, validated and tied to its input offsets,
/// and the writer keeping the order in which submissions were enqueued.
@Suite struct PipelineTests {
    static func intake() throws -> Intake {
        let yaml = try String(contentsOf: packageRoot.appendingPathComponent("examples/elec2/loop.yaml"), encoding: .utf8)
        let config = try LoopConfig.parse(yaml: yaml, file: "loop.yaml")
        return Intake(
            validator: try EventValidator(config: config, piiKey: Array(Deployment.piiKey.utf8)), deadLetterTopic: config.topics.names.deadLetters)
    }

    /// Raw records over two partitions, offsets interleaved; every seventh is invalid (no subject).
    static func rawBatch(count: Int) -> [ConsumedRecord] {
        (0..<count).map { index in
            let outgoing = binaryRecord(
                topic: "raw", id: "e-\(index)", subject: index % 7 == 3 ? nil : "NSW", data: observationData())
            return ConsumedRecord(
                topic: "raw", partition: Int32(index % 2), offset: Int64(1000 + index / 2), key: outgoing.key, value: outgoing.value,
                headers: outgoing.headers, timestamp: Date(timeIntervalSince1970: Double(1_714_557_600 + (index * 37) % count)))
        }
    }

    /// What an item says about its input, for comparing two validations of the same records.
    static func summary(_ item: WriteItem) -> String {
        switch item {
        case .event(let event): "event \(event.id) \(String(decoding: event.record.value ?? [], as: UTF8.self))"
        case .rejected(let rejection, _, let position): "rejected \(rejection.reason) \(rejection.field ?? "") \(position.map { "\($0.offset)" } ?? "")"
        }
    }

    @Test("a large batch is validated in two halves that cover it in order and validate exactly like the whole batch")
    func halves() async throws {
        let intake = try Self.intake()
        let batch = Self.rawBatch(count: 1201)
        let parts = await RawConsumer.validate(batch, intake: intake)
        #expect(parts.count == 2)
        #expect(parts.flatMap { $0.records.map(\.offset) } == batch.map(\.offset))
        for part in parts { #expect(part.items.count == part.records.count) }
        let whole = intake.items(from: batch).map(Self.summary)
        #expect(parts.flatMap { $0.items.map(Self.summary) } == whole)
        #expect(whole.contains { $0.hasPrefix("rejected missingAttribute subject") })

        let small = await RawConsumer.validate(Array(batch.prefix(999)), intake: intake)
        #expect(small.count == 1)
        #expect(small[0].records.count == 999)
    }

    @Test("each part carries the next offset of every partition it read and the time of its oldest record")
    func positions() {
        let batch = Self.rawBatch(count: 1000)
        let (firstHalf, secondHalf) = (batch[..<500], batch[500...])
        for part in [firstHalf, secondHalf, batch[...]] {
            let (next, oldest) = RawConsumer.positions(of: part)
            var expected: [TopicPartition: Int64] = [:]
            for record in part { expected[record.topicPartition] = max(expected[record.topicPartition] ?? 0, record.offset + 1) }
            #expect(next == expected)
            #expect(oldest == part.compactMap(\.timestamp).min())
        }
        #expect(RawConsumer.positions(of: firstHalf).next[TopicPartition(topic: "raw", partition: 1)] == 1250)
        #expect(RawConsumer.positions(of: secondHalf).next[TopicPartition(topic: "raw", partition: 1)] == 1500)
    }

    @Test("submissions enqueued one after the other are written to loop.events in that order, one cycle each, and answered")
    func enqueueOrder() async throws {
        let deployment = try await Deployment()
        let logger = Logger(label: "pipeline-tests")
        try await TopicLayout(config: deployment.config).ensureTopics(kafka: deployment.kafka, logger: logger)
        let intake = Intake(
            validator: try EventValidator(config: deployment.config, piiKey: Array(Deployment.piiKey.utf8)),
            deadLetterTopic: deployment.names.deadLetters)
        let store = try DedupeStore(path: deployment.stateDirectory + "/order.sqlite", horizon: .seconds(3600))
        let producer = try KafkaProducer(config: deployment.kafka, logger: logger)
        let writer = EventWriter(
            producer: producer, store: store, metrics: IngestMetrics(registry: PrometheusCollectorRegistry()), logger: logger,
            cycleItems: 1, maxInFlight: 4)
        let running = Task { await writer.run() }

        let count = 60
        let submissions = (0..<count).map { index in
            let raw = binaryRecord(topic: deployment.names.rawEvents, id: "order-\(index)", subject: "NSW", data: observationData())
            let record = ConsumedRecord(
                topic: deployment.names.rawEvents, partition: 0, offset: Int64(index), key: raw.key, value: raw.value, headers: raw.headers)
            return writer.enqueue(intake.items(from: [record]))
        }
        for submission in submissions.reversed() {
            #expect(try await submission.outcomes() == [.accepted])
        }
        writer.stop()
        await running.value
        await #expect(throws: WriteError.self) { try await writer.enqueue(intake.items(from: [])).outcomes() }

        let written = try await deployment.readAll(deployment.names.events).sorted { $0.offset < $1.offset }
        #expect(Set(written.map(\.partition)).count == 1)
        #expect(written.map { String(decoding: $0.header("ce_id")?.value ?? [], as: UTF8.self) } == (0..<count).map { "order-\($0)" })
    }
}

import Contracts
import Foundation
@testable import Ingest
import Kafka
import Logging
import Prometheus
import ServiceKit
import Testing

/// The raw path's pipeline: how a consumed batch is tied to its input offsets,
/// and the writer keeping the order in which submissions were enqueued.
@Suite struct PipelineTests {
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

    @Test("a slice of a batch carries the next offset of every partition it read and the time of its oldest record")
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

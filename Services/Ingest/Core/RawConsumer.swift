import Foundation
import Kafka
import Logging

/// Consumes the raw topic in a consumer group: validates batches concurrently while the writer
/// handles earlier ones, enqueues them to the writer in order, and marks a batch processed only
/// after its outputs are acknowledged and persisted.
struct RawConsumer: Sendable {
    let consumer: KafkaConsumer
    let intake: Intake
    let writer: EventWriter
    let batchSize: Int
    /// Batches submitted and not yet answered: a bound on memory and on the work replayed after a
    /// crash. The raw bench finds the writer holding at most two batches at p90, so this bound is
    /// not what limits throughput.
    let depth = 8

    /// Seeks newly assigned partitions to the input offsets persisted with the dedupe keys.
    struct Rebalance: RebalanceHandler {
        let store: DedupeStore
        let logger: Logger

        func assigned(_ partitions: [TopicPartition]) async -> [TopicPartition: Int64]? {
            do {
                let stored = try store.offsets(.input)
                return stored.filter { partitions.contains($0.key) }
            } catch {
                logger.error("cannot read the persisted input offsets; resuming from the committed ones", metadata: ["error.message": "\(error)"])
                return nil
            }
        }

        func revoked(_ partitions: [TopicPartition]) async {}
    }

    /// The next offset per input partition after `records`, and when the oldest of them was written.
    static func positions(of records: ArraySlice<ConsumedRecord>) -> (next: [TopicPartition: Int64], oldest: Date) {
        // The few partitions of a batch, searched linearly: cheaper per record than hashing the topic.
        var ends: [(topic: String, partition: Int32, next: Int64)] = []
        var oldest = Date()
        for index in records.indices {
            let partition = records[index].partition, next = records[index].offset + 1
            if let slot = ends.firstIndex(where: { $0.partition == partition && $0.topic == records[index].topic }) {
                ends[slot].next = max(ends[slot].next, next)
            } else {
                ends.append((records[index].topic, partition, next))
            }
            if let timestamp = records[index].timestamp, timestamp < oldest { oldest = timestamp }
        }
        let next = Dictionary(ends.map { (TopicPartition(topic: $0.topic, partition: $0.partition), $0.next) }, uniquingKeysWith: max)
        return (next, oldest)
    }

    /// Consumes batches and keeps up to `depth` of them in flight, each through three stages:
    /// validation (batches validate concurrently, so both cores work while the writer is busy),
    /// enqueueing to the writer (strictly in consumption order, with the batch's input offsets),
    /// and marking processed once it and every earlier batch are written. A batch is marked as soon
    /// as it is written, not when a later batch arrives, so the last batches are committed while
    /// the input is idle too.
    func run() async throws {
        var inFlight: [Task<Void, any Error>] = []
        var previousEnqueued: Task<(submission: EventWriter.Submission, next: [TopicPartition: Int64]), Never>?
        var previousWritten: Task<Void, any Error>?
        for try await batch in consumer.batches(maxRecords: batchSize, maxWait: .milliseconds(20)) {
            let validation = Task { [intake] in intake.items(from: batch) }
            let enqueued = Task { [writer, previousEnqueued] in
                _ = await previousEnqueued?.value
                let items = await validation.value
                let (next, oldest) = Self.positions(of: batch[...])
                return (submission: writer.enqueue(items, inputOffsets: next, receivedAt: oldest), next: next)
            }
            let written = Task { [consumer, previousWritten] in
                try await previousWritten?.value
                let (submission, ends) = await enqueued.value
                _ = try await submission.outcomes()
                for (partition, next) in ends {
                    consumer.markProcessed(topic: partition.topic, partition: partition.partition, offset: next - 1)
                }
            }
            previousEnqueued = enqueued
            previousWritten = written
            inFlight.append(written)
            while inFlight.count >= depth {
                try await inFlight.removeFirst().value
            }
        }
        for written in inFlight {
            try await written.value
        }
    }
}

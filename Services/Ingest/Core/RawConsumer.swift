import Foundation
import Kafka
import Logging

/// Consumes the raw topic in a consumer group: validates each batch (in two halves on two tasks)
/// while the writer handles the previous ones, and marks a batch processed only after its outputs
/// are acknowledged and persisted.
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

    /// A validated part of a batch: its records (a slice sharing the batch's storage) and their items.
    struct Part {
        var records: ArraySlice<ConsumedRecord>
        var items: [WriteItem]
    }

    /// Validates a batch, in two halves on two tasks when it is large enough to be worth it.
    static func validate(_ batch: [ConsumedRecord], intake: Intake) async -> [Part] {
        guard batch.count >= 1000 else { return [Part(records: batch[...], items: intake.items(from: batch[...]))] }
        let middle = batch.count / 2
        let (firstHalf, secondHalf) = (batch[..<middle], batch[middle...])
        async let first = intake.items(from: firstHalf)
        let second = intake.items(from: secondHalf)
        return [Part(records: firstHalf, items: await first), Part(records: secondHalf, items: second)]
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

    /// Consumes, validates and enqueues batches to the writer (in order, each half as a submission
    /// with its own input offsets), keeping up to `depth` batches in flight. Each batch is marked
    /// processed as soon as it and every earlier one are written, not when a later batch arrives,
    /// so the last batches are committed while the input is idle too.
    func run() async throws {
        var inFlight: [Task<Void, any Error>] = []
        var previous: Task<Void, any Error>?
        for try await batch in consumer.batches(maxRecords: batchSize, maxWait: .milliseconds(20)) {
            var submissions: [EventWriter.Submission] = []
            var ends: [TopicPartition: Int64] = [:]
            for part in await Self.validate(batch, intake: intake) {
                let (next, oldest) = Self.positions(of: part.records)
                submissions.append(writer.enqueue(part.items, inputOffsets: next, receivedAt: oldest))
                ends.merge(next, uniquingKeysWith: max)
            }
            let consumer = self.consumer
            let completion = Task { [previous, submissions, ends] in
                try await previous?.value
                for submission in submissions { _ = try await submission.outcomes() }
                for (partition, next) in ends {
                    consumer.markProcessed(topic: partition.topic, partition: partition.partition, offset: next - 1)
                }
            }
            previous = completion
            inFlight.append(completion)
            while inFlight.count >= depth {
                try await inFlight.removeFirst().value
            }
        }
        for completion in inFlight {
            try await completion.value
        }
    }
}

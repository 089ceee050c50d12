import Foundation
import Kafka
import Logging

/// Consumes the raw topic in a consumer group: validates each batch on this task while the writer
/// handles the previous ones, and marks a batch processed only after its outputs are acknowledged
/// and persisted.
struct RawConsumer: Sendable {
    let consumer: KafkaConsumer
    let intake: Intake
    let writer: EventWriter
    let batchSize: Int
    /// Batches submitted and not yet answered.
    let depth = 4

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

    /// Validates a batch, in two halves on two tasks when it is large enough to be worth it.
    func validate(_ batch: [ConsumedRecord]) async -> [WriteItem] {
        guard batch.count >= 1000 else { return intake.items(from: batch) }
        let middle = batch.count / 2
        let intake = self.intake
        let firstHalf = Array(batch[..<middle])
        async let first = intake.items(from: firstHalf)
        let second = intake.items(from: Array(batch[middle...]))
        return await first + second
    }

    /// Consumes, validates and submits batches, keeping up to `depth` in flight. Each batch is
    /// marked processed as soon as it and every earlier one are written, not when a later batch
    /// arrives, so the last batches are committed while the input is idle too.
    func run() async throws {
        var inFlight: [Task<Void, any Error>] = []
        var previous: Task<Void, any Error>?
        for try await batch in consumer.batches(maxRecords: batchSize, maxWait: .milliseconds(20)) {
            let items = await validate(batch)
            var next: [TopicPartition: Int64] = [:]
            var oldest = Date()
            for record in batch {
                next[record.topicPartition] = max(next[record.topicPartition] ?? 0, record.offset + 1)
                if let timestamp = record.timestamp, timestamp < oldest { oldest = timestamp }
            }
            let receivedAt = oldest
            let (writer, consumer) = (self.writer, self.consumer)
            let outcome = Task { try await writer.submit(items, inputOffsets: next, receivedAt: receivedAt) }
            let completion = Task { [previous] in
                try await previous?.value
                _ = try await outcome.value
                consumer.markProcessed(batch)
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

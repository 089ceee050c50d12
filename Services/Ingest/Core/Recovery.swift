import Contracts
import Kafka
import Logging

/// Makes a restart after a crash exact: anything written to `loop.events` or `loop.events.dlq`
/// after the persisted output marks may belong to a batch whose keys and offsets never reached
/// SQLite. Reading those records back (and only those) and remembering their keys and raw
/// positions means the replayed raw records are recognised instead of written twice.
enum Recovery {
    struct Summary {
        var events = 0
        var deadLetters = 0
    }

    /// Reads both output topics from their marks to the end; persists the keys found and the new
    /// marks, and tells `writer` which raw records were already dead-lettered.
    static func run(
        kafka: KafkaConfig, names: Topics, store: DedupeStore, writer: EventWriter, logger: Logger
    ) async throws -> Summary {
        let admin = try KafkaAdmin(config: kafka, logger: logger)
        let outputs = try await admin.describeTopics([names.events, names.deadLetters])
        var marks = try store.offsets(.output)
        let partitions = outputs.flatMap { topic in topic.partitions.map { TopicPartition(topic: topic.name, partition: $0.id) } }
        var fresh: [TopicPartition: Int64] = [:]
        for partition in partitions where marks[partition] == nil {
            // No state for this partition: nothing of ours can be in flight there.
            fresh[partition] = try await admin.watermarks(topic: partition.topic, partition: partition.partition).high
        }
        marks.merge(fresh) { $1 }

        var summary = Summary()
        var hashes: [UInt64] = []
        var positions: Set<SourcePosition> = []
        var newMarks = fresh
        let reader = try PartitionReader(config: kafka, partitions: partitions, offsets: marks, logger: logger)
        reading: for try await event in reader.events(maxRecords: 10_000, maxWait: .milliseconds(50)) {
            switch event {
            case .caughtUp: break reading
            case .records(let records):
                for record in records {
                    newMarks[record.topicPartition] = max(newMarks[record.topicPartition] ?? 0, record.offset + 1)
                    if record.topic == names.events {
                        guard let source = record.header("ce_source")?.value, let id = record.header("ce_id")?.value else { continue }
                        hashes.append(DedupeStore.hash(source: source, id: id))
                        summary.events += 1
                    } else if let value = record.value, let letter = try? DeadLetter(bytes: value), letter.origin == "kafka",
                              let topic = letter.topic, let partition = letter.partition, let offset = letter.offset {
                        positions.insert(SourcePosition(topic: topic, partition: Int32(partition), offset: offset))
                        summary.deadLetters += 1
                    }
                }
            }
        }
        await reader.close()
        try store.persist(hashes: hashes, inputOffsets: [:], outputMarks: newMarks, nowMs: DedupeStore.nowMs())
        writer.skipDeadLetters(positions)
        if summary.events + summary.deadLetters > 0 {
            logger.info("recovered outputs written after the last persisted batch", metadata: [
                "ingest.recovered_events": "\(summary.events)", "ingest.recovered_dead_letters": "\(summary.deadLetters)",
            ])
        }
        return summary
    }
}

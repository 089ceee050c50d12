import Kafka
import Logging

/// Reads topics without a consumer group: every partition from the beginning (or the last few
/// records of each), up to the end it had when reading started, optionally following after that.
public struct TopicReader: Sendable {
    let config: KafkaConfig
    let logger: Logger

    public init(config: KafkaConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    /// Where reading starts on each partition.
    public enum Start: Sendable, Hashable {
        /// The oldest retained record.
        case beginning
        /// The last `n` records of each partition.
        case last(Int)
    }

    /// The partitions of `topic`; ``LoopctlError/Code/notFound`` if it does not exist.
    public func partitions(of topic: String) async throws(LoopctlError) -> [TopicPartition] {
        do {
            let admin = try KafkaAdmin(config: config, logger: logger)
            guard let description = try await admin.describeTopics([topic]).first else {
                throw LoopctlError(.notFound, "topic \(topic) does not exist")
            }
            return description.partitions.map { TopicPartition(topic: topic, partition: $0.id) }
        } catch let error as LoopctlError {
            throw error
        } catch let error as KafkaError {
            if error.code == .unknownTopicOrPartition { throw LoopctlError(.notFound, "topic \(topic) does not exist") }
            throw LoopctlError(.kafka, "cannot describe \(topic): \(error.reason)", isRetryable: error.isRetriable)
        } catch {
            throw LoopctlError(.kafka, "cannot describe \(topic): \(error)")
        }
    }

    /// Every record of `topic` that exists now (in offset order per partition); an empty array for a
    /// topic that does not exist when `missingIsEmpty`.
    public func readAll(_ topic: String, missingIsEmpty: Bool = false) async throws(LoopctlError) -> [ConsumedRecord] {
        var records: [ConsumedRecord] = []
        do {
            try await read(topic, start: .beginning, follow: false) { batch in records.append(contentsOf: batch) }
        } catch where missingIsEmpty && error.code == .notFound {
            return []
        }
        return records
    }

    /// Hands each batch read from `topic` to `handle`: up to the end, then, when `follow`, whatever
    /// arrives until the task is cancelled.
    public func read(
        _ topic: String, start: Start, follow: Bool, handle: ([ConsumedRecord]) throws -> Void
    ) async throws(LoopctlError) {
        let partitions = try await partitions(of: topic)
        var offsets: [TopicPartition: Int64] = [:]
        if case .last(let count) = start {
            do {
                let admin = try KafkaAdmin(config: config, logger: logger)
                for partition in partitions {
                    let (low, high) = try await admin.watermarks(topic: topic, partition: partition.partition)
                    offsets[partition] = max(low, high - Int64(max(0, count)))
                }
            } catch {
                throw LoopctlError(.kafka, "cannot read the offsets of \(topic): \(error.reason)", isRetryable: error.isRetriable)
            }
        }
        do {
            let reader = try PartitionReader(config: config, partitions: partitions, offsets: offsets, logger: logger)
            do {
                for try await event in reader.events(maxRecords: 2000, maxWait: .milliseconds(50)) {
                    switch event {
                    case .records(let records): try handle(records)
                    case .caughtUp: if !follow { await reader.close(); return }
                    }
                    if Task.isCancelled { break }
                }
            } catch {
                await reader.close()
                throw error
            }
            await reader.close()
        } catch let error as LoopctlError {
            throw error
        } catch let error as KafkaError {
            throw LoopctlError(.kafka, "reading \(topic) failed: \(error.reason)", isRetryable: error.isRetriable)
        } catch {
            throw LoopctlError(.kafka, "reading \(topic) failed: \(error)")
        }
    }
}

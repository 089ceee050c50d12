import Contracts
import Kafka
import Logging

/// The topics of a deployment as `loop.yaml` shapes them, and their creation at start-up.
///
/// Every topic is keyed by entity with the configured partition count, so topics are
/// co-partitioned. `loop.models` is the exception: one partition, so every reader sees a model
/// version before the registry state that names it. `loop.features` and `loop.models` are
/// compacted; the others keep records for the configured retention.
public struct TopicLayout: Sendable {
    public let names: Topics
    public let specs: [TopicSpec]

    public init(config: LoopConfig) {
        names = config.topics.names
        let retentionMs = String(Int64(config.topics.retention.seconds * 1000))
        let replication = Int16(config.topics.replicationFactor)
        specs = names.all.map { [names] topic in
            let partitions = topic == names.models ? 1 : Int32(config.topics.partitions)
            let settings = names.isCompacted(topic)
                ? ["cleanup.policy": "compact"]
                : ["cleanup.policy": "delete", "retention.ms": retentionMs]
            return TopicSpec(name: topic, partitions: partitions, replicationFactor: replication, config: settings)
        }
    }

    /// Creates every topic that does not exist yet (existing ones are left as they are).
    public func ensureTopics(kafka: KafkaConfig, logger: Logger) async throws {
        let admin = try KafkaAdmin(config: kafka, logger: logger)
        let created = try await admin.createTopics(specs)
        if !created.isEmpty {
            logger.info("created topics", metadata: ["kafka.topics": "\(created.joined(separator: ","))"])
        }
    }
}

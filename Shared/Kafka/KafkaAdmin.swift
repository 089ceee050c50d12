import Logging

/// A topic to create.
public struct TopicSpec: Sendable, Hashable {
    /// Topic name.
    public var name: String
    /// Number of partitions.
    public var partitions: Int32
    /// Replicas per partition.
    public var replicationFactor: Int16
    /// Topic configuration, e.g. `cleanup.policy=compact`, `retention.ms`.
    public var config: [String: String]

    /// Creates a spec.
    public init(name: String, partitions: Int32, replicationFactor: Int16 = 1, config: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.config = config
    }
}

/// One partition of a described topic.
public struct PartitionDescription: Sendable, Hashable {
    /// Partition number.
    public var id: Int32
    /// Broker id of the leader (-1 when none).
    public var leader: Int32
    /// Broker ids of the replicas.
    public var replicas: [Int32]
}

/// A topic as the cluster's metadata describes it.
public struct TopicDescription: Sendable, Hashable {
    /// Topic name.
    public var name: String
    /// Its partitions, by id.
    public var partitions: [PartitionDescription]
}

/// How far a consumer group is behind on one partition.
public struct PartitionLag: Sendable, Hashable {
    /// Partition number.
    public var partition: Int32
    /// The group's committed offset (next to read), or `nil` if it never committed.
    public var committed: Int64?
    /// Oldest retained offset.
    public var low: Int64
    /// Offset the next produced record gets (high watermark).
    public var high: Int64
    /// Records not yet consumed: `high - committed` (`high - low` without a commit).
    public var lag: Int64
}

/// A consumer group's lag on one topic.
public struct TopicLag: Sendable, Hashable {
    /// Topic name.
    public var topic: String
    /// Per-partition lag, by partition.
    public var partitions: [PartitionLag]
    /// Sum over partitions.
    public var total: Int64 { partitions.reduce(0) { $0 + $1.lag } }
}

/// Topic administration and offset inspection.
///
/// On Tansu: CreateTopics, Metadata, ListOffsets and OffsetFetch work; topic configs such as
/// `cleanup.policy=compact` are accepted but compaction is not enforced.
public final class KafkaAdmin: Sendable {
    private let engine: AdminEngine
    private let config: KafkaConfig
    private let logger: Logger

    /// Creates an admin client; `timeout` bounds every request.
    public init(config: KafkaConfig, timeout: Duration = .seconds(10), logger: Logger) throws(KafkaError) {
        self.engine = try AdminEngine(properties: try config.properties(), timeout: timeout, logger: logger)
        self.config = config
        self.logger = logger
    }

    /// Creates topics that do not exist yet; existing ones are left alone (success). Returns the names
    /// created by this call.
    @discardableResult
    public func createTopics(_ specs: [TopicSpec]) async throws(KafkaError) -> [String] {
        guard !specs.isEmpty else { return [] }
        let created = try await engine.createTopics(specs)
        if !created.isEmpty { logger.info("Kafka topics created", metadata: ["kafka.topics": "\(created)"]) }
        return created
    }

    /// Describes topics; throws ``KafkaError/Code/unknownTopicOrPartition`` if one does not exist.
    public func describeTopics(_ names: [String]) async throws(KafkaError) -> [TopicDescription] {
        try await engine.describe(names)
    }

    /// The low (oldest retained) and high (next to be written) offsets of a partition.
    ///
    /// The high watermark is confirmed by a short read at the end of the partition, because Tansu's
    /// ListOffsets reports the base offset of the last record batch plus one.
    public func watermarks(topic: String, partition: Int32) async throws(KafkaError) -> (low: Int64, high: Int64) {
        let partition = TopicPartition(topic: topic, partition: partition)
        return try await engine.watermarks([partition])[partition]!
    }

    /// A group's committed offsets (next offset to read) on every partition of the topics, for the
    /// partitions where it committed.
    public func committedOffsets(group: String, topics: [String]) async throws(KafkaError) -> [TopicPartition: Int64] {
        let partitions = try await describeTopics(topics).flatMap { topic in
            topic.partitions.map { TopicPartition(topic: topic.name, partition: $0.id) }
        }
        var properties = try config.properties()
        properties["group.id"] = group
        properties["enable.auto.commit"] = "false"
        let reader = try ConsumerEngine(properties: properties, isGroupMember: false, logger: logger)
        return try await reader.committed(partitions, timeout: engine.timeout)
    }

    /// How far `group` is behind on each partition of `topic`.
    public func lag(group: String, topic: String) async throws(KafkaError) -> TopicLag {
        let committed = try await committedOffsets(group: group, topics: [topic])
        guard let description = try await describeTopics([topic]).first else {
            throw KafkaError(.unknownTopicOrPartition, "topic \(topic) does not exist")
        }
        let watermarks = try await engine.watermarks(
            description.partitions.map { TopicPartition(topic: topic, partition: $0.id) })
        var partitions: [PartitionLag] = []
        for partition in description.partitions {
            let (low, high) = watermarks[TopicPartition(topic: topic, partition: partition.id)]!
            let offset = committed[TopicPartition(topic: topic, partition: partition.id)]
            partitions.append(PartitionLag(
                partition: partition.id, committed: offset, low: low, high: high,
                lag: max(0, high - max(offset ?? low, low))))
        }
        return TopicLag(topic: topic, partitions: partitions)
    }
}

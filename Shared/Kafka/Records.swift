import Foundation

/// A topic and one of its partitions.
public struct TopicPartition: Sendable, Hashable, CustomStringConvertible {
    /// Topic name.
    public var topic: String
    /// Partition number.
    public var partition: Int32

    /// Creates a topic-partition pair.
    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// A Kafka record header. A `nil` value is a header without a value.
public struct KafkaHeader: Sendable, Hashable {
    /// Header name.
    public var key: String
    /// Header bytes, or `nil` for a header without a value.
    public var value: [UInt8]?

    /// Creates a header from bytes.
    public init(key: String, value: [UInt8]?) {
        self.key = key
        self.value = value
    }

    /// Creates a header from a UTF-8 string.
    public init(key: String, string: String) {
        self.init(key: key, value: Array(string.utf8))
    }
}

/// A record to produce.
public struct OutgoingRecord: Sendable {
    /// Destination topic.
    public var topic: String
    /// Record key (the partitioner hashes it), or `nil`.
    public var key: [UInt8]?
    /// Record value; `nil` is a tombstone (deletes the key in a compacted topic).
    public var value: [UInt8]?
    /// Record headers, in order.
    public var headers: [KafkaHeader]
    /// An explicit partition, or `nil` to let the partitioner choose by key.
    public var partition: Int32?

    /// Creates a record.
    public init(
        topic: String, key: [UInt8]? = nil, value: [UInt8]?, headers: [KafkaHeader] = [],
        partition: Int32? = nil
    ) {
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
        self.partition = partition
    }
}

/// Where the broker stored a produced record.
public struct DeliveryReport: Sendable, Hashable {
    /// Topic the record was written to.
    public var topic: String
    /// Partition the record was written to.
    public var partition: Int32
    /// Offset of the record in its partition.
    public var offset: Int64

    /// Creates a report.
    public init(topic: String, partition: Int32, offset: Int64) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }
}

/// A record read from Kafka.
public struct ConsumedRecord: Sendable {
    /// Topic it was read from.
    public var topic: String
    /// Partition it was read from.
    public var partition: Int32
    /// Its offset in the partition.
    public var offset: Int64
    /// Record key, or `nil`.
    public var key: [UInt8]?
    /// Record value; `nil` is a tombstone.
    public var value: [UInt8]?
    /// Record headers, in order.
    public var headers: [KafkaHeader]
    /// The record's timestamp (create or log-append time), when the broker gave one.
    public var timestamp: Date?

    /// Creates a record (useful in tests of code that consumes records).
    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8]?,
        headers: [KafkaHeader] = [], timestamp: Date? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    /// The topic and partition the record came from.
    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }

    /// The first header with this name, if any.
    public func header(_ key: String) -> KafkaHeader? { headers.first { $0.key == key } }
}

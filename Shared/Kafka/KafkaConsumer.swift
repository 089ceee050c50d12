import Logging

/// Told about partition ownership changes of a ``KafkaConsumer``, on the consumer's polling thread,
/// which waits for each call to finish: so a stateful service can flush before it loses partitions
/// and restore (and choose where to resume) when it gains them.
public protocol RebalanceHandler: Sendable {
    /// Partitions newly assigned to this consumer. Return offsets to start from (the next offset to
    /// read, e.g. from a local store); partitions left out resume from the group's committed offset
    /// (or ``ConsumerSettings/startPosition``).
    func assigned(_ partitions: [TopicPartition]) async -> [TopicPartition: Int64]?
    /// Partitions about to be taken away: finish and flush their work now. Stored offsets are
    /// committed right after this returns (unless the partitions were lost).
    func revoked(_ partitions: [TopicPartition]) async
}

/// A consumer-group member that yields batches of records.
///
/// Offsets are stored only for records passed to ``markProcessed(_:)`` and committed every
/// ``ConsumerSettings/autoCommitInterval``, on ``commit()``, before partitions are revoked and on
/// ``close()``: at-least-once delivery with nothing skipped. Rebalances (eager or cooperative) are
/// reported to the ``RebalanceHandler``.
///
/// On Tansu a consumer's first group join takes about half of ``ConsumerSettings/sessionTimeout``.
public final class KafkaConsumer: Sendable {
    private let engine: ConsumerEngine
    private let channel: BatchChannel<[ConsumedRecord]>
    private let logger: Logger

    /// Creates a consumer in group `groupID`; checks the librdkafka version and logs it.
    public init(
        config: KafkaConfig, groupID: String, consumer: ConsumerSettings = .init(), logger: Logger
    ) throws(KafkaError) {
        var properties = try config.properties()
        for (key, value) in try consumer.properties(groupID: groupID) {
            if let other = config.extra[key], other != value {
                throw KafkaError(.invalidConfiguration, "extra['\(key)'] = '\(other)' conflicts with ConsumerSettings ('\(value)')")
            }
            properties[key] = value
        }
        let engine = try ConsumerEngine(properties: properties, isGroupMember: true, logger: logger)
        let channel = BatchChannel<[ConsumedRecord]>(capacity: consumer.bufferedBatches)
        engine.onRevoke = { revoked in
            channel.rewriteBuffered { batch in
                let kept = batch.filter { !revoked.contains($0.topicPartition) }
                return kept.isEmpty ? nil : kept
            }
        }
        engine.onStop = { error in channel.finish(error) }
        self.engine = engine
        self.channel = channel
        self.logger = logger
        logger.info(
            "Kafka consumer started",
            metadata: [
                "kafka.librdkafka": "\(Librdkafka.runtimeVersion.1)", "kafka.brokers": "\(config.brokers)",
                "kafka.group": "\(groupID)",
            ])
    }

    deinit { engine.beginClosing() }

    /// Subscribes to topics. Call once, before iterating ``batches(maxRecords:maxWait:)``.
    public func subscribe(topics: [String], rebalance: (any RebalanceHandler)? = nil) throws(KafkaError) {
        guard !topics.isEmpty else { throw KafkaError(.invalidConfiguration, "subscribe needs at least one topic") }
        engine.rebalanceHandler = rebalance
        try engine.subscribe(topics)
    }

    /// Batches of up to `maxRecords` records, each returned as soon as it is full or `maxWait` has
    /// passed with at least one record. Fetching pauses while ``ConsumerSettings/bufferedBatches``
    /// batches wait for the caller. Can be iterated once; ends after ``close()`` and throws a
    /// ``KafkaError`` if librdkafka fails fatally.
    public func batches(maxRecords: Int = 1000, maxWait: Duration = .milliseconds(100)) -> RecordBatches {
        RecordBatches(engine: engine, channel: channel, maxRecords: maxRecords, maxWait: maxWait)
    }

    /// Marks records processed: stores, per partition, the offset after the highest one, to be
    /// committed. Returns the partitions this consumer no longer owns (their offsets were not stored).
    @discardableResult
    public func markProcessed(_ records: some Collection<ConsumedRecord>) -> [TopicPartition] {
        var next: [TopicPartition: Int64] = [:]
        for record in records {
            let tp = record.topicPartition
            next[tp] = max(next[tp] ?? Int64.min, record.offset + 1)
        }
        return engine.store(next)
    }

    /// Marks every record up to and including `offset` of one partition processed.
    @discardableResult
    public func markProcessed(topic: String, partition: Int32, offset: Int64) -> Bool {
        engine.store([TopicPartition(topic: topic, partition: partition): offset + 1]).isEmpty
    }

    /// Commits the stored offsets now and waits for the broker.
    public func commit() async throws(KafkaError) {
        try await engine.commit()
    }

    /// Moves an assigned partition to `offset` (the next record to read). Records fetched before the
    /// seek and not yet handed out are dropped; a batch already being delivered may still hold some.
    public func seek(topic: String, partition: Int32, offset: Int64) throws(KafkaError) {
        let tp = TopicPartition(topic: topic, partition: partition)
        try engine.seek(tp, to: offset)
        channel.rewriteBuffered { batch in
            let kept = batch.filter { $0.topicPartition != tp }
            return kept.isEmpty ? nil : kept
        }
    }

    /// Commits stored offsets, revokes (calling the handler), leaves the group and ends the batches.
    public func close() async {
        await engine.close()
    }
}

/// The batches of a ``KafkaConsumer``.
public struct RecordBatches: AsyncSequence, Sendable {
    public typealias Element = [ConsumedRecord]
    public typealias Failure = any Error

    let engine: ConsumerEngine
    let channel: BatchChannel<[ConsumedRecord]>
    let maxRecords: Int
    let maxWait: Duration

    public func makeAsyncIterator() -> Iterator {
        let started = engine.start(maxRecords: maxRecords, maxWait: maxWait) { [channel] records, _ in
            records.isEmpty ? true : channel.push(records)
        }
        return Iterator(channel: channel, refusal: started ? nil : KafkaError(
            .alreadyConsuming, "this consumer's batches are already being iterated, or it was closed"))
    }

    /// Iterates the batches.
    public struct Iterator: AsyncIteratorProtocol {
        let channel: BatchChannel<[ConsumedRecord]>
        var refusal: KafkaError?

        public mutating func next() async throws -> [ConsumedRecord]? {
            if let refusal {
                self.refusal = nil
                throw refusal
            }
            return try await channel.next()
        }
    }
}

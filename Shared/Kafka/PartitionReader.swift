import Foundation
import Logging
import Synchronization

/// Reads given partitions without a consumer group: from the beginning (or given offsets) up to the
/// high watermark they had when reading reached, signals ``Event/caughtUp``, then keeps following.
/// Used to rebuild local state from a changelog topic before serving.
///
/// Nothing is committed. "The end" is where librdkafka reports partition EOF (see
/// `CatchUpTracker`), which works on Tansu and Kafka alike.
public struct PartitionReader: Sendable {
    /// What the reader yields.
    public enum Event: Sendable {
        /// The next records, in offset order per partition.
        case records([ConsumedRecord])
        /// Every partition has been read up to the end it had when reading started; yielded once.
        case caughtUp
    }

    private let core: ReaderCore

    /// Creates a reader of `partitions`, each starting at `offsets[partition]` (the next offset to
    /// read) or at the beginning.
    public init(
        config: KafkaConfig, partitions: [TopicPartition], offsets: [TopicPartition: Int64] = [:],
        bufferedBatches: Int = 4, logger: Logger
    ) throws(KafkaError) {
        guard !partitions.isEmpty else { throw KafkaError(.invalidConfiguration, "PartitionReader needs partitions") }
        var properties = try config.properties()
        properties["group.id"] = "\(config.clientID)-reader-\(UUID().uuidString.prefix(8))"
        properties["enable.auto.commit"] = "false"
        properties["enable.auto.offset.store"] = "false"
        properties["enable.partition.eof"] = "true"
        properties["auto.offset.reset"] = "earliest"
        let engine = try ConsumerEngine(properties: properties, isGroupMember: false, logger: logger)
        core = ReaderCore(
            engine: engine, channel: BatchChannel(capacity: max(1, bufferedBatches)),
            partitions: partitions, offsets: offsets, logger: logger)
        engine.onStop = { [channel = core.channel] error in channel.finish(error) }
    }

    /// The events: batches of up to `maxRecords` records (each returned when full or after
    /// `maxWait`), and ``Event/caughtUp`` once. Can be iterated once.
    public func events(maxRecords: Int = 1000, maxWait: Duration = .milliseconds(100)) -> Events {
        Events(core: core, maxRecords: maxRecords, maxWait: maxWait)
    }

    /// Stops reading and ends the events.
    public func close() async { await core.engine.close() }

    /// The events of a ``PartitionReader``.
    public struct Events: AsyncSequence, Sendable {
        public typealias Element = Event
        public typealias Failure = any Error

        let core: ReaderCore
        let maxRecords: Int
        let maxWait: Duration

        public func makeAsyncIterator() -> Iterator { Iterator(core: core, maxRecords: maxRecords, maxWait: maxWait) }

        /// Iterates the events.
        public struct Iterator: AsyncIteratorProtocol {
            let core: ReaderCore
            let maxRecords: Int
            let maxWait: Duration
            var started = false

            public mutating func next() async throws -> Event? {
                if !started {
                    started = true
                    try await core.start(maxRecords: maxRecords, maxWait: maxWait)
                }
                return try await core.channel.next()
            }
        }
    }
}

/// The reader's engine, channel and catch-up bookkeeping.
final class ReaderCore: Sendable {
    let engine: ConsumerEngine
    let channel: BatchChannel<PartitionReader.Event>
    let partitions: [TopicPartition]
    let offsets: [TopicPartition: Int64]
    let logger: Logger
    private let tracker = CatchUpTracker()

    init(
        engine: ConsumerEngine, channel: BatchChannel<PartitionReader.Event>, partitions: [TopicPartition],
        offsets: [TopicPartition: Int64], logger: Logger
    ) {
        self.engine = engine
        self.channel = channel
        self.partitions = partitions
        self.offsets = offsets
        self.logger = logger
    }

    deinit { engine.beginClosing() }

    func start(maxRecords: Int, maxWait: Duration) async throws(KafkaError) {
        var starts: [TopicPartition: Int64] = [:]
        for partition in partitions { starts[partition] = offsets[partition] ?? ConsumerEngine.offsetBeginning }
        try engine.assign(starts)
        tracker.begin(Set(partitions))
        logger.debug("PartitionReader started", metadata: ["kafka.partitions": "\(partitions)"])
        let started = engine.start(maxRecords: maxRecords, maxWait: maxWait) { [channel, tracker] records, reachedEnd in
            if !records.isEmpty && !channel.push(.records(records)) { return false }
            if tracker.progress(records, reachedEnd) { return channel.push(.caughtUp) }
            return true
        }
        if !started { throw KafkaError(.alreadyConsuming, "this reader's events are already being iterated, or it was closed") }
    }
}

/// Which partitions have not yet reached their end.
///
/// "The end" is librdkafka's partition EOF (the fetch position reached the high watermark the broker
/// returned with the fetch), reported for empty partitions too. The high watermark from ListOffsets
/// is not used because Tansu reports it too low (see ``KafkaAdmin/watermarks(topic:partition:)``).
final class CatchUpTracker: Sendable {
    private let pending = Mutex<Set<TopicPartition>?>(nil)

    func begin(_ partitions: Set<TopicPartition>) { pending.withLock { $0 = partitions } }

    /// Updates the bookkeeping; returns `true` exactly when the last partition reaches its end.
    func progress(_ records: [ConsumedRecord], _ reachedEnd: [TopicPartition]) -> Bool {
        pending.withLock { pending in
            guard var remaining = pending, !remaining.isEmpty, !reachedEnd.isEmpty else { return false }
            remaining.subtract(reachedEnd)
            pending = remaining
            return remaining.isEmpty
        }
    }
}

import Foundation
import Logging
import Synchronization

/// Reads given partitions without a consumer group: from the beginning (or given offsets) up to the
/// high watermark they had when reading started, signals ``Event/caughtUp``, then keeps following.
/// Used to rebuild local state from a changelog topic before serving.
///
/// Nothing is committed. Works on Tansu (ListOffsets for the watermarks, partition EOF for empty
/// partitions).
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
    /// Partitions not yet read up to their starting high watermark, with that watermark.
    private let pending = Mutex<[TopicPartition: Int64]?>(nil)

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
        var targets: [TopicPartition: Int64] = [:]
        var starts: [TopicPartition: Int64] = [:]
        for partition in partitions {
            let (low, high) = try await AdminEngine.watermarks(engine.handle, partition, timeout: .seconds(10))
            let start = offsets[partition].map { max($0, low) } ?? low
            starts[partition] = offsets[partition] ?? ConsumerEngine.offsetBeginning
            if start < high { targets[partition] = high }
        }
        try engine.assign(starts)
        pending.withLock { $0 = targets }
        if targets.isEmpty { _ = channel.push(.caughtUp) }
        logger.debug("PartitionReader started", metadata: ["kafka.partitions": "\(partitions)"])
        let started = engine.start(maxRecords: maxRecords, maxWait: maxWait) { [self] records, reachedEnd in
            if !records.isEmpty && !channel.push(.records(records)) { return false }
            if progress(records, reachedEnd) { return channel.push(.caughtUp) }
            return true
        }
        if !started { throw KafkaError(.alreadyConsuming, "this reader's events are already being iterated, or it was closed") }
    }

    /// Updates the catch-up bookkeeping; returns `true` exactly when the last partition catches up.
    private func progress(_ records: [ConsumedRecord], _ reachedEnd: [TopicPartition]) -> Bool {
        pending.withLock { pending in
            guard var remaining = pending, !remaining.isEmpty else { return false }
            for record in records {
                if let target = remaining[record.topicPartition], record.offset + 1 >= target {
                    remaining[record.topicPartition] = nil
                }
            }
            for partition in reachedEnd { remaining[partition] = nil }
            pending = remaining
            return remaining.isEmpty
        }
    }
}

import Foundation
import Logging
import Synchronization

/// Reads any number of partitions with one librdkafka handle, without a consumer group, where
/// partitions can be added and removed while it runs. Each added partition is read from its given
/// offset (or the beginning) up to the end it had when reading reached it, reported once by
/// ``Event/caughtUp(_:)``, then followed.
///
/// One handle fetches every partition it reads in one request per broker, so following many
/// partitions costs the broker no more requests than following one (unlike one
/// ``PartitionReader`` per partition). Nothing is committed. After ``remove(_:)`` returns, no
/// record or catch-up of the removed partitions' earlier reading is yielded (an event already
/// returned by the iterator is the caller's), so a partition removed and added again is read
/// afresh.
public final class AssignableReader: Sendable {
    /// What the reader yields.
    public enum Event: Sendable {
        /// The next records, in offset order per partition.
        case records([ConsumedRecord])
        /// These partitions have been read up to the end they had when reading reached it; yielded
        /// once per ``AssignableReader/add(_:offsets:)`` of a partition.
        case caughtUp([TopicPartition])
    }

    private let engine: ConsumerEngine
    private let channel: BatchChannel<Stamped>
    private let assignment = Assignment()
    private let logger: Logger

    /// Creates a reader that reads nothing until partitions are added.
    public init(config: KafkaConfig, bufferedBatches: Int = 4, logger: Logger) throws(KafkaError) {
        var properties = try config.properties()
        properties["group.id"] = "\(config.clientID)-reader-\(UUID().uuidString.prefix(8))"
        properties["enable.auto.commit"] = "false"
        properties["enable.auto.offset.store"] = "false"
        properties["enable.partition.eof"] = "true"
        properties["auto.offset.reset"] = "earliest"
        engine = try ConsumerEngine(properties: properties, isGroupMember: false, logger: logger)
        channel = BatchChannel(capacity: max(1, bufferedBatches))
        self.logger = logger
        engine.onStop = { [channel] error in channel.finish(error) }
    }

    deinit { engine.beginClosing() }

    /// Starts reading `partitions`, each at `offsets[partition]` (the next offset to read) or at the
    /// beginning. Partitions already being read are read afresh from there.
    public func add(_ partitions: [TopicPartition], offsets: [TopicPartition: Int64] = [:]) throws(KafkaError) {
        guard !partitions.isEmpty else { return }
        let present = assignment.present(partitions)
        if !present.isEmpty { try remove(present) }
        var starts: [TopicPartition: Int64] = [:]
        for partition in partitions { starts[partition] = offsets[partition] ?? ConsumerEngine.offsetBeginning }
        assignment.add(partitions)
        do { try engine.addAssignment(starts) } catch {
            assignment.remove(partitions)
            throw error
        }
        logger.debug("AssignableReader added partitions", metadata: ["kafka.partitions": "\(partitions)"])
    }

    /// Stops reading `partitions`.
    public func remove(_ partitions: [TopicPartition]) throws(KafkaError) {
        let present = assignment.present(partitions)
        guard !present.isEmpty else { return }
        assignment.remove(present)
        try engine.removeAssignment(present)
        logger.debug("AssignableReader removed partitions", metadata: ["kafka.partitions": "\(present)"])
    }

    /// The events: batches of up to `maxRecords` records (each returned when full or after
    /// `maxWait`) and the catch-ups. Can be iterated once.
    public func events(maxRecords: Int = 1000, maxWait: Duration = .milliseconds(100)) -> Events {
        Events(reader: self, maxRecords: maxRecords, maxWait: maxWait)
    }

    /// Stops reading and ends the events.
    public func close() async { await engine.close() }

    private func start(maxRecords: Int, maxWait: Duration) throws(KafkaError) {
        let started = engine.start(maxRecords: maxRecords, maxWait: maxWait) { [channel, assignment] records, reachedEnd in
            let (stamp, caughtUp) = assignment.stamp(reachedEnd: reachedEnd)
            let kept = Self.kept(records, stamp: stamp)
            if !kept.isEmpty && !channel.push(Stamped(event: .records(kept), stamp: stamp)) { return false }
            if !caughtUp.isEmpty { return channel.push(Stamped(event: .caughtUp(caughtUp), stamp: stamp)) }
            return true
        }
        if !started { throw KafkaError(.alreadyConsuming, "this reader's events are already being iterated, or it was closed") }
    }

    /// The next event still current: anything read under an assignment that has been removed since is dropped.
    private func next() async throws -> Event? {
        while let stamped = try await channel.next() {
            let current = assignment.stamp(reachedEnd: []).stamp
            if stamped.stamp.allSatisfy({ current[$0.key] == $0.value }) { return stamped.event }
            let valid = stamped.stamp.filter { current[$0.key] == $0.value }
            switch stamped.event {
            case .records(let records):
                let kept = Self.kept(records, stamp: valid)
                if !kept.isEmpty { return .records(kept) }
            case .caughtUp(let partitions):
                let kept = partitions.filter { valid[$0] != nil }
                if !kept.isEmpty { return .caughtUp(kept) }
            }
        }
        return nil
    }

    /// The records of partitions in `stamp`; records come in runs per partition, so this looks up
    /// each run once and copies nothing when every record is kept.
    private static func kept(_ records: [ConsumedRecord], stamp: [TopicPartition: UInt64]) -> [ConsumedRecord] {
        var previous: (topic: String, partition: Int32)?
        var allKept = true
        for record in records where previous.map({ $0.partition != record.partition || $0.topic != record.topic }) ?? true {
            previous = (record.topic, record.partition)
            if stamp[record.topicPartition] == nil {
                allKept = false
                break
            }
        }
        return allKept ? records : records.filter { stamp[$0.topicPartition] != nil }
    }

    /// The events of an ``AssignableReader``.
    public struct Events: AsyncSequence, Sendable {
        public typealias Element = Event
        public typealias Failure = any Error

        let reader: AssignableReader
        let maxRecords: Int
        let maxWait: Duration

        public func makeAsyncIterator() -> Iterator { Iterator(reader: reader, maxRecords: maxRecords, maxWait: maxWait) }

        /// Iterates the events.
        public struct Iterator: AsyncIteratorProtocol {
            let reader: AssignableReader
            let maxRecords: Int
            let maxWait: Duration
            var started = false

            public mutating func next() async throws -> Event? {
                if !started {
                    started = true
                    try reader.start(maxRecords: maxRecords, maxWait: maxWait)
                }
                return try await reader.next()
            }
        }
    }
}

/// An event with the generation of each partition assigned when it was read.
struct Stamped: Sendable {
    let event: AssignableReader.Event
    let stamp: [TopicPartition: UInt64]
}

/// The partitions an ``AssignableReader`` reads, each with the generation of its latest add, and
/// those not yet caught up.
final class Assignment: Sendable {
    private struct State {
        var generations: [TopicPartition: UInt64] = [:]
        var pending: Set<TopicPartition> = []
        var nextGeneration: UInt64 = 0
    }
    private let state = Mutex(State())

    func present(_ partitions: [TopicPartition]) -> [TopicPartition] {
        state.withLock { state in partitions.filter { state.generations[$0] != nil } }
    }

    func add(_ partitions: [TopicPartition]) {
        state.withLock { state in
            for partition in partitions {
                state.nextGeneration += 1
                state.generations[partition] = state.nextGeneration
                state.pending.insert(partition)
            }
        }
    }

    func remove(_ partitions: [TopicPartition]) {
        state.withLock { state in
            for partition in partitions {
                state.generations.removeValue(forKey: partition)
                state.pending.remove(partition)
            }
        }
    }

    /// The current generations, and which of `reachedEnd` caught up for the first time since added.
    func stamp(reachedEnd: [TopicPartition]) -> (stamp: [TopicPartition: UInt64], caughtUp: [TopicPartition]) {
        state.withLock { state in
            let caughtUp = reachedEnd.filter { state.pending.remove($0) != nil }
            return (state.generations, caughtUp)
        }
    }
}

import Contracts
import Features
import Foundation
import Kafka
import Logging
import Prometheus
import ServiceKit
import Synchronization

/// The partitions this instance owns, for readers outside the processor (the HTTP API).
final class StoreRegistry: Sendable {
    /// Ascending by partition, so a read takes the array as it is.
    private let stores = Mutex<[PartitionStore]>([])

    func set(_ store: PartitionStore) {
        stores.withLock { stores in
            stores.removeAll { $0.partition == store.partition }
            stores.append(store)
            stores.sort { $0.partition < $1.partition }
        }
    }

    func remove(_ partition: Int32) { stores.withLock { $0.removeAll { $0.partition == partition } } }
    var all: [PartitionStore] { stores.withLock { $0 } }
}

/// Applies `loop.events` batches to the per-partition state and publishes every change to
/// `loop.features`; restores partitions when they are assigned and lets them go only once their
/// publications are acknowledged.
///
/// Per batch and partition (on ``WriteLanes``, one per core by default, each partition's batches
/// in order on its lane; see ``PartitionWriter``): apply every event in memory (an entity touched
/// by many events is loaded and written once) → one SQLite transaction with the changed states,
/// their history snapshots and the next input offset. The processor queues a batch's partitions on
/// the lanes and goes on with the next batch, so a lane done with its share of one batch starts on
/// the next. Once all of a batch's partitions are written, the latest state of every changed entity
/// goes to the publisher, which sends batches strictly in order, one at a time, and records each
/// acknowledgement in SQLite before it marks the batch's input processed. At most
/// ``FeatureStoreOptions/maxInFlightBatches`` batches are being written or published at once.
///
/// A crash before a batch's transaction redoes the batch from the stored offset; a crash after it
/// republishes the entities of every unacknowledged batch when the partition is next assigned
/// (republishing is harmless: readers keep the latest record per key). State updates are
/// therefore exactly-once and publication at-least-once.
///
/// The processor runs on its own thread (``WriterExecutor``) and writes partitions on dispatch's
/// worker threads, not on Swift's cooperative pool: a batch's decoding, applying and SQLite
/// transactions never make HTTP reads or the publisher wait for a thread.
actor FeatureProcessor {
    private let executor = WriterExecutor()
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private let schema: FeatureSchema
    private let context: WriteContext
    private let eventsTopic: String
    private let featuresTopic: String
    private let options: FeatureStoreOptions
    private let historyRetentionMillis: Int64
    private let producer: KafkaProducer
    private let kafka: KafkaConfig
    private let logger: Logger
    private let metrics: FeatureStoreMetrics
    private let readiness: Readiness
    private let acknowledged: @Sendable ([ConsumedRecord]) -> Void
    let registry: StoreRegistry

    private var writers: [Int32: PartitionWriter] = [:]
    private let lanes: WriteLanes
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private var inFlight: [Task<Void, any Error>] = []
    private var nextBatchID = UInt64.random(in: 0...(UInt64.max >> 8)) << 8
    private var lastPrune = ContinuousClock.now
    /// A failure that must stop the service (a partition could not be restored).
    private var failure: FeatureStoreError?

    static let readyCondition = "feature-store.partitions-restored"

    /// `acknowledged` receives the last input record of each partition of a batch once the batch's
    /// changes are stored and acknowledged by `loop.features`, in input order (the caller marks
    /// them, and so every earlier record of their partitions, processed).
    init(
        schema: FeatureSchema, config: LoopConfig, options: FeatureStoreOptions, producer: KafkaProducer,
        kafka: KafkaConfig, logger: Logger, metrics: FeatureStoreMetrics, readiness: Readiness, registry: StoreRegistry,
        acknowledged: @escaping @Sendable ([ConsumedRecord]) -> Void
    ) {
        self.schema = schema
        self.context = WriteContext(
            schema: schema, decoder: EventDecoder(schema: schema), featuresTopic: config.topics.names.features,
            stateCacheEntities: options.stateCacheEntities, logger: logger, metrics: metrics)
        self.lanes = WriteLanes(count: options.writeLanes == 0 ? ProcessInfo.processInfo.activeProcessorCount : options.writeLanes)
        self.eventsTopic = config.topics.names.events
        self.featuresTopic = config.topics.names.features
        self.options = options
        self.historyRetentionMillis = Int64((config.features.historyRetention.seconds * 1000).rounded())
        self.producer = producer
        self.kafka = kafka
        self.logger = logger
        self.metrics = metrics
        self.readiness = readiness
        self.registry = registry
        self.acknowledged = acknowledged
    }

    // MARK: - One batch at a time

    private func acquire() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func release() {
        if waiting.isEmpty {
            busy = false
        } else {
            waiting.removeFirst().resume()
        }
    }

    // MARK: - Processing

    /// Queues a batch's partitions on the write lanes and its publication behind them; waits only
    /// while more than ``FeatureStoreOptions/maxInFlightBatches`` batches are being written or
    /// published. Records of partitions
    /// this instance does not own are left alone.
    /// - Throws: the failure of an earlier publication (the service must stop and restart).
    func process(_ records: [ConsumedRecord]) async throws {
        await acquire()
        defer { release() }
        if let failure { throw failure }
        let started = ContinuousClock.now
        // Each partition's records by position in the batch: the writers read them where they are.
        var byPartition: [Int32: [Int]] = [:]
        records.withUnsafeBufferPointer { records in
            for position in records.indices where records[position].topic == eventsTopic {
                byPartition[records[position].partition, default: []].append(position)
            }
        }
        var jobs: [(writer: PartitionWriter, positions: [Int], batch: UInt64)] = []
        for (partition, positions) in byPartition.sorted(by: { $0.key < $1.key }) {
            guard let writer = writers[partition] else { continue }
            jobs.append((writer, positions, nextBatchID))
            nextBatchID &+= 1
        }
        let writes = lanes.submit(records, jobs)
        let previous = inFlight.last
        let (producer, logger, metrics, acknowledged) = (self.producer, self.logger, self.metrics, self.acknowledged)
        inFlight.append(Task.detached { [self] in
            // Each partition batch's changelog records as the lane made them (not copied into one array).
            var outgoing: [[OutgoingRecord]] = []
            var written: [Written] = []
            var consumed: [ConsumedRecord] = []
            var newest = Int64.min
            for outcome in await writes.outcomes() {
                let batch = try outcome.get()
                outgoing.append(batch.outgoing)
                written.append(batch.written)
                newest = max(newest, batch.newestMillis)
                consumed.append(batch.last)
            }
            metrics.applyDuration.record(ContinuousClock.now - started)
            // Publications go out strictly in order: a failed predecessor fails its successors.
            try await previous?.value
            let reports = try await Self.publish(outgoing, producer: producer, logger: logger)
            try await recordAcknowledged(written, reports: reports)
            metrics.publishLatency.record(ContinuousClock.now - started)
            if newest > .min { metrics.eventTimeLag.set(Date().timeIntervalSince1970 - Double(newest) / 1000) }
            acknowledged(consumed)
        })
        while inFlight.count > options.maxInFlightBatches {
            try await awaitOldestPublication()
        }
        metrics.inFlightBatches.set(Double(inFlight.count))
        updateGauges()
        try pruneIfDue()
    }

    /// Waits until every queued publication is acknowledged (or one failed).
    func drain() async throws {
        await acquire()
        defer { release() }
        try await drainPublications()
    }

    private func drainPublications() async throws {
        while !inFlight.isEmpty {
            try await awaitOldestPublication()
        }
        metrics.inFlightBatches.set(Double(0))
    }

    /// Waits for the oldest queued publication; a failure stops all further processing.
    private func awaitOldestPublication() async throws {
        do {
            try await inFlight.removeFirst().value
        } catch {
            let stop = error as? FeatureStoreError ?? FeatureStoreError(.publish, "publishing failed: \(error)", isRetryable: true)
            failure = failure ?? stop
            throw stop
        }
    }

    /// Enqueues the partition batches' records one batch after the other (so each partition keeps
    /// their order), then awaits their acknowledgements; a batch whose delivery failed is sent
    /// again while the failure is retriable.
    private static func publish(
        _ batches: [[OutgoingRecord]], producer: KafkaProducer, logger: Logger
    ) async throws(FeatureStoreError) -> [DeliveryReport] {
        var pending: [(records: [OutgoingRecord], delivery: KafkaProducer.PendingDelivery)] = []
        for records in batches where !records.isEmpty {
            pending.append((records, await producer.enqueue(records)))
        }
        var reports: [DeliveryReport] = []
        for (records, delivery) in pending {
            do {
                reports += try await delivery.reports()
            } catch {
                reports += try await send(records, failedOnce: error, producer: producer, logger: logger)
            }
        }
        return reports
    }

    /// Sends `records` again after a failed delivery, and again while the failure is retriable.
    private static func send(
        _ records: [OutgoingRecord], failedOnce failure: KafkaError, producer: KafkaProducer, logger: Logger
    ) async throws(FeatureStoreError) -> [DeliveryReport] {
        var error = failure
        var attempt = 1
        while true {
            guard error.isRetriable, attempt < 5 else {
                throw FeatureStoreError(.publish, "publishing \(records.count) feature states failed: \(error)", isRetryable: true)
            }
            logger.warning("publishing feature states failed; retrying", metadata: [
                "error.message": "\(error)", "attempt": "\(attempt)"])
            try? await Task.sleep(for: .milliseconds(200 * attempt))
            do {
                return try await producer.send(records)
            } catch let next {
                error = next
                attempt += 1
            }
        }
    }

    /// Stores how far the changelog acknowledged (on the writer, which owns the SQLite writes).
    private func recordAcknowledged(_ written: [Written], reports: [DeliveryReport]) throws(FeatureStoreError) {
        var changelogNext: [Int32: Int64] = [:]
        for report in reports { changelogNext[report.partition] = max(changelogNext[report.partition] ?? 0, report.offset + 1) }
        for entry in written where entry.changes > 0 {
            try entry.store.recordAcknowledged(through: entry.inputNext, changelogNext: changelogNext[entry.store.partition])
        }
    }

    private func updateGauges() {
        metrics.entities.set(Double(writers.values.reduce(0) { $0 + $1.entityCount }))
        metrics.stateBytes.set(Double(writers.values.reduce(0) { $0 + $1.store.sizeOnDisk() }))
    }

    private func pruneIfDue() throws(FeatureStoreError) {
        guard ContinuousClock.now - lastPrune >= options.pruneInterval else { return }
        lastPrune = ContinuousClock.now
        for writer in writers.values {
            try writer.pruneHistory(retentionMillis: historyRetentionMillis)
        }
    }

    // MARK: - Rebalancing

    /// Opens and restores newly assigned partitions; returns where to resume each.
    func assign(_ partitions: [TopicPartition]) async -> [TopicPartition: Int64] {
        await acquire()
        defer { release() }
        let numbers = partitions.filter { $0.topic == eventsTopic }.map(\.partition)
        guard !numbers.isEmpty else { return [:] }
        var attempt = 0
        while true {
            do {
                let offsets = try await restore(numbers)
                readiness.satisfy(Self.readyCondition)
                return offsets
            } catch {
                attempt += 1
                logger.error("restoring partitions failed", metadata: [
                    "kafka.partitions": "\(numbers)", "error.message": "\(error)", "attempt": "\(attempt)"])
                if attempt >= 5 {
                    failure = FeatureStoreError(.restore, "cannot restore partitions \(numbers): \(error)")
                    return [:]
                }
                try? await Task.sleep(for: .milliseconds(500 * attempt))
            }
        }
    }

    private func restore(_ partitions: [Int32]) async throws -> [TopicPartition: Int64] {
        var opened: [Int32: PartitionStore] = [:]
        var starts: [TopicPartition: Int64] = [:]
        for partition in partitions {
            let store = try writers[partition]?.store ?? PartitionStore(
                directory: options.stateDirectory, partition: partition, historyInterval: options.historyInterval.seconds)
            opened[partition] = store
            starts[TopicPartition(topic: featuresTopic, partition: partition)] = try store.progress().changelogNext
        }
        let replays = try await Self.replay(starts, kafka: kafka, logger: logger)
        var offsets: [TopicPartition: Int64] = [:]
        for (partition, store) in opened {
            let tp = TopicPartition(topic: featuresTopic, partition: partition)
            var replay = replays[tp] ?? ChangelogReplay(startingAt: starts[tp] ?? 0)
            replay.finish()
            metrics.restoredRecords.increment(by: Int64(replay.latest.count))
            var changes: [EntityChange] = []
            changes.reserveCapacity(replay.latest.count)
            for (entity, bytes) in replay.latest {
                do {
                    let state = try EntityFeatureState(decoding: bytes, schema: schema)
                    changes.append(EntityChange(
                        entity: entity, bytes: bytes, latestMillis: state.latestEventTime.map(PartitionWriter.millis)))
                } catch {
                    logger.warning("changelog record does not decode; skipped", metadata: [
                        "entity": "\(entity)", "error.message": "\(error)"])
                }
            }
            let (resumeAt, replaced) = try store.restore(changes, inputNext: replay.inputNext, changelogNext: replay.changelogNext)
            let unpublished = try store.unpublished()
            if !unpublished.isEmpty, let inputNext = try store.progress().inputNext {
                let records = PartitionWriter.publication(
                    of: unpublished.map { (Array($0.entity.utf8), $0.bytes, nil) }, topic: featuresTopic, partition: partition,
                    batch: nextBatchID, inputNext: inputNext)
                nextBatchID &+= 1
                let reports = try await Self.publish([records], producer: producer, logger: logger)
                let next = reports.map(\.offset).max().map { $0 + 1 }
                try store.recordAcknowledged(through: inputNext, changelogNext: next)
            }
            writers[partition] = PartitionWriter(
                store: store, context: context, entityCount: try store.entityCount(), inputNext: try store.progress().inputNext,
                newestEventMillis: writers[partition]?.newestEventMillis ?? .min)
            registry.set(store)
            if let resumeAt { offsets[TopicPartition(topic: eventsTopic, partition: partition)] = resumeAt }
            logger.info("partition restored", metadata: [
                "kafka.partition": "\(partition)", "changelog.records": "\(replay.latest.count)",
                "changelog.replaced_local": "\(replaced)", "republished": "\(unpublished.count)",
                "resume.offset": "\(resumeAt.map(String.init) ?? "group")"])
        }
        updateGauges()
        return offsets
    }

    /// Reads the changelog partitions from `starts` to their current end.
    static func replay(
        _ starts: [TopicPartition: Int64], kafka: KafkaConfig, logger: Logger
    ) async throws -> [TopicPartition: ChangelogReplay] {
        var replays: [TopicPartition: ChangelogReplay] = [:]
        for (tp, start) in starts { replays[tp] = ChangelogReplay(startingAt: start) }
        let reader = try PartitionReader(config: kafka, partitions: Array(starts.keys), offsets: starts, logger: logger)
        do {
            reading: for try await event in reader.events(maxRecords: 5000) {
                switch event {
                case .records(let records):
                    for record in records { replays[record.topicPartition]?.add(record) }
                case .caughtUp:
                    break reading
                }
            }
        } catch {
            await reader.close()
            throw error
        }
        await reader.close()
        return replays
    }

    /// Lets partitions go between batches: everything applied is committed and published by then.
    func revoke(_ partitions: [TopicPartition]) async {
        await acquire()
        defer { release() }
        do {
            try await drainPublications()
        } catch {
            logger.error("publishing before a revocation failed; unacknowledged changes are republished on the next assignment", metadata: [
                "error.message": "\(error)"])
        }
        for tp in partitions where tp.topic == eventsTopic {
            writers.removeValue(forKey: tp.partition)
            registry.remove(tp.partition)
        }
        updateGauges()
    }
}

/// Hands the consumer's rebalances to the processor.
struct ProcessorRebalance: RebalanceHandler {
    let processor: FeatureProcessor

    func assigned(_ partitions: [TopicPartition]) async -> [TopicPartition: Int64]? {
        await processor.assign(partitions)
    }

    func revoked(_ partitions: [TopicPartition]) async {
        await processor.revoke(partitions)
    }
}

/// A serial executor on one dedicated dispatch queue: the feature-store's writer runs there, off
/// Swift's cooperative thread pool, which stays free for the HTTP reads and the publishers.
final class WriterExecutor: SerialExecutor {
    private let queue = DispatchQueue(label: "feature-store.writer", qos: .userInitiated)

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }
}


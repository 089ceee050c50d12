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
/// Per batch: apply every event in memory (an entity touched by many events is loaded and
/// written once) → one SQLite transaction per partition with the changed states, their history
/// snapshots and the next input offset → hand the latest state of every changed entity to the
/// publisher and go on with the next batch. The publisher sends batches strictly in order, one
/// at a time, and records each acknowledgement in SQLite before it marks the batch's input
/// processed; at most ``FeatureStoreOptions/maxInFlightBatches`` batches wait for it, so the
/// publication of batch N overlaps the application of batch N+1.
///
/// A crash before a batch's transaction redoes the batch from the stored offset; a crash after it
/// republishes the entities of every unacknowledged batch when the partition is next assigned
/// (republishing is harmless: readers keep the latest record per key). State updates are
/// therefore exactly-once and publication at-least-once.
///
/// The processor runs on its own thread (``WriterExecutor``), not on Swift's cooperative pool: a
/// batch's decoding, applying and SQLite transaction never make HTTP reads wait for a thread.
actor FeatureProcessor {
    private let executor = WriterExecutor()
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private let schema: FeatureSchema
    private let decoder: EventDecoder
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

    private var stores: [Int32: PartitionStore] = [:]
    private var entityCounts: [Int32: Int] = [:]
    /// Per partition, the decoded states of recently changed entities as committed.
    private var caches: [Int32: StateCache] = [:]
    private var newestEventMillis: [Int32: Int64] = [:]
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private var inFlight: [Task<Void, any Error>] = []
    private var nextBatchID = UInt64.random(in: 0...(UInt64.max >> 8)) << 8
    private var lastPrune = ContinuousClock.now
    private var encodeBuffer: [UInt8] = []
    /// The field values of a batch's events, one row of ``EventDecoder/fieldCount`` per event.
    private var valueRows: [Double] = []
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
        self.decoder = EventDecoder(schema: schema)
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

    /// Applies and stores a batch, then queues its publication; waits only while more than
    /// ``FeatureStoreOptions/maxInFlightBatches`` publications are pending. Records of partitions
    /// this instance does not own are left alone.
    /// - Throws: the failure of an earlier publication (the service must stop and restart).
    func process(_ records: [ConsumedRecord]) async throws {
        await acquire()
        defer { release() }
        if let failure { throw failure }
        let started = ContinuousClock.now
        var byPartition: [Int32: [ConsumedRecord]] = [:]
        for record in records where record.topic == eventsTopic && stores[record.partition] != nil {
            byPartition[record.partition, default: []].append(record)
        }
        var outgoing: [OutgoingRecord] = []
        var written: [Written] = []
        var done: [ConsumedRecord] = []
        var newest = Int64.min
        for (partition, records) in byPartition {
            guard let store = stores[partition], let last = records.last else { continue }
            // The cache is out of the dictionary while the batch runs: if the batch fails, it is dropped.
            var cache = caches.removeValue(forKey: partition) ?? StateCache(capacity: options.stateCacheEntities)
            let (changes, snapshots, published, newestMillis) = try apply(records, partition: partition, store: store, cache: &cache)
            let inputNext = last.offset + 1
            try store.commit(changes, snapshots: snapshots, inputNext: inputNext)
            caches[partition] = cache
            outgoing += publication(of: published, partition: partition, inputNext: inputNext)
            written.append(Written(store: store, inputNext: inputNext, changes: changes.count))
            if !changes.isEmpty { metrics.writeBatchSize.record(Double(changes.count)) }
            if !snapshots.isEmpty { metrics.historySnapshots.increment(by: Int64(snapshots.count)) }
            newest = max(newest, newestMillis)
            done.append(last)
        }
        metrics.applyDuration.record(ContinuousClock.now - started)
        let previous = inFlight.last
        let (producer, logger, metrics, acknowledged) = (self.producer, self.logger, self.metrics, self.acknowledged)
        let (records, stored, newestApplied, consumed) = (outgoing, written, newest, done)
        inFlight.append(Task.detached { [self] in
            // Publications go out strictly in order: a failed predecessor fails its successors.
            try await previous?.value
            let reports = try await Self.publish(records, producer: producer, logger: logger)
            try await recordAcknowledged(stored, reports: reports)
            metrics.publishLatency.record(ContinuousClock.now - started)
            if newestApplied > .min { metrics.eventTimeLag.set(Date().timeIntervalSince1970 - Double(newestApplied) / 1000) }
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

    /// Where one partition batch was stored: what its acknowledgement records.
    private struct Written: Sendable {
        var store: PartitionStore
        var inputNext: Int64
        var changes: Int
    }

    /// One `loop.features` record to publish: an entity's state, and the score request's offset
    /// when it is the state as of that request.
    private typealias Publication = (entity: String, bytes: [UInt8], requestOffset: Int64?)

    /// Applies one partition's records in offset order; returns the changed entities' records
    /// (one per entity, its latest state), the history snapshots taken inside the batch (an
    /// entity's state just before an event moves its latest event time into a later history
    /// interval), the records to publish (see ``ChangelogHeaders``) and the newest event time.
    ///
    /// States come from `cache` (taken out while they change) or else from SQLite; every state
    /// the batch loaded goes back into `cache`, to be kept once the batch is committed.
    private func apply(
        _ records: [ConsumedRecord], partition: Int32, store: PartitionStore, cache: inout StateCache
    ) throws(FeatureStoreError) -> ([EntityChange], [EntityChange], [Publication], Int64) {
        // Decode: each event's field values go to its row of one reused buffer; each entity gets
        // a slot, so it is read and decoded once per batch, whatever number of events it has.
        let (schema, logger, fieldCount) = (self.schema, self.logger, decoder.fieldCount)
        if valueRows.count < records.count * fieldCount {
            valueRows = Array(repeating: .nan, count: records.count * fieldCount)
        }
        var events: [DecodedEvent] = []
        events.reserveCapacity(records.count)
        var slots: [String: Int] = [:]
        slots.reserveCapacity(records.count)
        var entities: [String] = []
        var invalid = 0
        var ignored = 0
        valueRows.withUnsafeMutableBufferPointer { rows in
            for record in records {
                let first = events.count * fieldCount
                switch decoder.decode(record, values: UnsafeMutableBufferPointer(rebasing: rows[first..<(first + fieldCount)])) {
                case .event(let entity, let time, let type):
                    let slot: Int
                    if let known = slots[entity] {
                        slot = known
                    } else {
                        slot = entities.count
                        slots[entity] = slot
                        entities.append(entity)
                    }
                    events.append(DecodedEvent(slot: slot, time: time, type: type, offset: record.offset))
                case .ignored:
                    ignored += 1
                case .invalid(let reason):
                    invalid += 1
                    logger.debug("invalid event", metadata: [
                        "kafka.partition": "\(partition)", "kafka.offset": "\(record.offset)", "error.message": "\(reason)"])
                }
            }
        }
        var states: [EntityFeatureState?] = Array(repeating: nil, count: entities.count)
        var isNew = Array(repeating: true, count: entities.count)
        var uncached: [Int] = []
        for index in entities.indices {
            if let state = cache.take(entities[index]) {
                states[index] = state
                isNew[index] = false
            } else {
                uncached.append(index)
            }
        }
        try store.withRecords(of: uncached.map { entities[$0] }) { position, bytes in
            let index = uncached[position]
            isNew[index] = false
            do {
                states[index] = try EntityFeatureState(decoding: bytes, schema: schema)
            } catch {
                logger.warning("stored state does not decode; starting the entity afresh", metadata: [
                    "entity": "\(entities[index])", "error.message": "\(error)"])
            }
        }
        // Apply in offset order. Each state is taken out of its slot while it changes, so no
        // event copies it.
        var changed = Array(repeating: false, count: entities.count)
        // Whether an entity's last applied event was a score request, whose tagged state is then its latest.
        var endsWithRequest = Array(repeating: false, count: entities.count)
        var published: [Publication] = []
        var snapshots: [EntityChange] = []
        var applied = 0
        var late = 0
        var newestMillis = newestEventMillis[partition] ?? .min
        let rows = valueRows
        rows.withUnsafeBufferPointer { rows in
            for (position, event) in events.enumerated() {
                let index = event.slot
                var state = states[index].take() ?? EntityFeatureState(entityID: entities[index], schema: schema)
                defer { states[index] = state }
                // A time that is no time is refused by `apply` below.
                let eventMillis = event.time.isFinite && abs(event.time) < 1e13 ? Self.millis(event.time) : .min
                // The state just before an event that moves the entity into a later history interval.
                var before: EntityChange?
                if let previous = state.latestEventTime.map(Self.millis), eventMillis > previous,
                   store.historySlot(eventMillis) > store.historySlot(previous) {
                    before = EntityChange(entity: entities[index], bytes: encode(state), latestMillis: previous)
                }
                let values = UnsafeBufferPointer(rebasing: rows[(position * fieldCount)..<((position + 1) * fieldCount)])
                do {
                    switch try state.apply(time: event.time, type: event.type, values: values) {
                    case .applied:
                        applied += 1
                        if let before { snapshots.append(before) }
                        changed[index] = true
                        endsWithRequest[index] = event.type == Self.scoreRequestType
                        if endsWithRequest[index] { published.append((entities[index], encode(state), event.offset)) }
                        newestMillis = max(newestMillis, eventMillis)
                    case .late:
                        late += 1
                    }
                } catch {
                    invalid += 1
                }
            }
        }
        newestEventMillis[partition] = newestMillis
        var changes: [EntityChange] = []
        changes.reserveCapacity(entities.count)
        var added = 0
        for index in entities.indices where changed[index] {
            let state = states[index]!
            if isNew[index] { added += 1 }
            let bytes = encode(state)
            changes.append(EntityChange(
                entity: entities[index], bytes: bytes, latestMillis: state.latestEventTime.map(Self.millis)))
            if !endsWithRequest[index] { published.append((entities[index], bytes, nil)) }
        }
        for index in entities.indices where changed[index] || !isNew[index] {
            if let state = states[index].take() { cache.put(entities[index], state) }
        }
        entityCounts[partition, default: 0] += added
        metrics.eventsApplied.increment(by: Int64(applied))
        if late > 0 { metrics.eventsLate.increment(by: Int64(late)) }
        if invalid > 0 { metrics.eventsInvalid.increment(by: Int64(invalid)) }
        if ignored > 0 { metrics.eventsIgnored.increment(by: Int64(ignored)) }
        return (changes, snapshots, published, newestMillis)
    }

    private static let scoreRequestType = EventType.scoreRequest.description

    /// One decoded event of a batch: its entity's slot, time, type and input offset (its field
    /// values are its row of ``valueRows``).
    private struct DecodedEvent {
        var slot: Int
        var time: Double
        var type: String
        var offset: Int64
    }

    /// The encoded record of `state`, through a reused buffer.
    private func encode(_ state: EntityFeatureState) -> [UInt8] {
        encodeBuffer.removeAll(keepingCapacity: true)
        state.encode(into: &encodeBuffer)
        return encodeBuffer
    }

    static func millis(_ seconds: Double) -> Int64 { Int64((seconds * 1000).rounded()) }

    /// The changelog records of one partition batch.
    private func publication(of states: [Publication], partition: Int32, inputNext: Int64) -> [OutgoingRecord] {
        guard !states.isEmpty else { return [] }
        let batch = nextBatchID
        nextBatchID &+= 1
        let headers = ChangelogHeaders.Maker(batch: batch, count: states.count, inputNext: inputNext)
        return states.enumerated().map { index, entry in
            OutgoingRecord(
                topic: featuresTopic, key: Array(entry.entity.utf8), value: entry.bytes,
                headers: headers.headers(index: index, requestOffset: entry.requestOffset), partition: partition)
        }
    }

    /// Sends and awaits acknowledgement, retrying what failed while the failure is retriable.
    private static func publish(
        _ records: [OutgoingRecord], producer: KafkaProducer, logger: Logger
    ) async throws(FeatureStoreError) -> [DeliveryReport] {
        guard !records.isEmpty else { return [] }
        var attempt = 0
        while true {
            do {
                return try await producer.send(records)
            } catch {
                attempt += 1
                guard error.isRetriable, attempt < 5 else {
                    throw FeatureStoreError(.publish, "publishing \(records.count) feature states failed: \(error)", isRetryable: true)
                }
                logger.warning("publishing feature states failed; retrying", metadata: [
                    "error.message": "\(error)", "attempt": "\(attempt)"])
                try? await Task.sleep(for: .milliseconds(200 * attempt))
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
        metrics.entities.set(Double(entityCounts.values.reduce(0, +)))
        metrics.stateBytes.set(Double(stores.values.reduce(0) { $0 + $1.sizeOnDisk() }))
    }

    private func pruneIfDue() throws(FeatureStoreError) {
        guard ContinuousClock.now - lastPrune >= options.pruneInterval else { return }
        lastPrune = ContinuousClock.now
        for (partition, store) in stores {
            guard let newest = newestEventMillis[partition], newest > .min else { continue }
            try store.pruneHistory(before: newest - historyRetentionMillis)
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
            let store = try stores[partition] ?? PartitionStore(
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
                        entity: entity, bytes: bytes, latestMillis: state.latestEventTime.map(Self.millis)))
                } catch {
                    logger.warning("changelog record does not decode; skipped", metadata: [
                        "entity": "\(entity)", "error.message": "\(error)"])
                }
            }
            let (resumeAt, replaced) = try store.restore(changes, inputNext: replay.inputNext, changelogNext: replay.changelogNext)
            let unpublished = try store.unpublished()
            if !unpublished.isEmpty, let inputNext = try store.progress().inputNext {
                let reports = try await Self.publish(
                    publication(of: unpublished.map { ($0.entity, $0.bytes, nil) }, partition: partition, inputNext: inputNext),
                    producer: producer, logger: logger)
                let next = reports.map(\.offset).max().map { $0 + 1 }
                try store.recordAcknowledged(through: inputNext, changelogNext: next)
            }
            stores[partition] = store
            caches[partition] = nil
            registry.set(store)
            entityCounts[partition] = try store.entityCount()
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
            stores.removeValue(forKey: tp.partition)
            caches.removeValue(forKey: tp.partition)
            entityCounts.removeValue(forKey: tp.partition)
            newestEventMillis.removeValue(forKey: tp.partition)
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

/// The decoded states of one partition's recently changed entities, exactly as committed, so a
/// batch that touches them again skips the SQLite read and the decoding. Two generations of
/// `capacity / 2` entities each approximate least-recently-used eviction without per-entry
/// bookkeeping: when the newer one is full it becomes the older one and the older is dropped.
struct StateCache {
    private let generationSize: Int
    private var recent: [String: EntityFeatureState] = [:]
    private var older: [String: EntityFeatureState] = [:]

    /// A cache of at most `capacity` entities (0 disables it).
    init(capacity: Int) { generationSize = capacity / 2 }

    /// Removes and returns the state of `entity` (the caller owns it while it changes).
    mutating func take(_ entity: String) -> EntityFeatureState? {
        recent.removeValue(forKey: entity) ?? older.removeValue(forKey: entity)
    }

    /// Keeps `state` as the latest committed state of `entity`.
    mutating func put(_ entity: String, _ state: EntityFeatureState) {
        guard generationSize > 0 else { return }
        if recent.count >= generationSize {
            older = recent
            recent = [:]
            recent.reserveCapacity(generationSize)
        }
        recent[entity] = state
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


import Contracts
import Dispatch
import Features
import Kafka
import Logging
import Prometheus
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What every partition's writer shares: the definitions, the decoder and where to publish.
struct WriteContext: Sendable {
    let schema: FeatureSchema
    let decoder: EventDecoder
    let featuresTopic: String
    let stateCacheEntities: Int
    let logger: Logger
    let metrics: FeatureStoreMetrics
}

/// Where one partition batch was stored: what its acknowledgement records.
struct Written: Sendable {
    var store: PartitionStore
    var inputNext: Int64
    var changes: Int
}

/// What one partition batch produced once committed.
struct PartitionBatch: Sendable {
    /// Its changelog records, in publishing order (see ``ChangelogHeaders``).
    var outgoing: [OutgoingRecord]
    var written: Written
    /// Its last input record, to mark processed once the publication is acknowledged.
    var last: ConsumedRecord
    /// The newest event time it applied (ms), `Int64.min` if none.
    var newestMillis: Int64
}

/// One owned input partition's write path: decodes the partition's records of a batch, applies
/// them to its entities' states in offset order, commits the changed states with the next input
/// offset in one SQLite transaction and builds the batch's changelog records.
///
/// Partitions share nothing but ``WriteContext``, so ``WriteLanes`` writes the partitions of
/// one batch at the same time; each partition is written by one thread at a time (its state
/// stays locked for the whole batch).
final class PartitionWriter: Sendable {
    let store: PartitionStore
    private let context: WriteContext
    private let state: Mutex<State>

    /// The partition's state between batches.
    private struct State {
        /// The decoded states of recently changed entities, exactly as committed.
        var cache: StateCache
        var newestEventMillis = Int64.min
        var entityCount: Int
        /// The input offset after the last committed batch (`nil` before any): records below it
        /// are already applied.
        var inputNext: Int64?
        /// The field values of a batch's events, one row of ``EventDecoder/fieldCount`` per event.
        var valueRows: [Double] = []
        /// Scratch memory states are encoded through (see ``EntityFeatureState/encoded(version:scratch:)``).
        var encodeScratch: [UInt8] = []
        /// Why a batch failed, once one did: later batches queued behind it are refused, as
        /// applying them would commit an input offset past records never applied.
        var failure: FeatureStoreError?
    }

    /// The writer of `store`, which holds `entityCount` entities and has applied the input up to
    /// `inputNext` (its stored progress); `newestEventMillis` is the newest event time applied so
    /// far (ms), `Int64.min` if none.
    init(store: PartitionStore, context: WriteContext, entityCount: Int, inputNext: Int64?, newestEventMillis: Int64 = .min) {
        self.store = store
        self.context = context
        state = Mutex(State(
            cache: StateCache(capacity: context.stateCacheEntities), newestEventMillis: newestEventMillis, entityCount: entityCount,
            inputNext: inputNext))
    }

    var partition: Int32 { store.partition }
    var entityCount: Int { state.withLock { $0.entityCount } }
    var newestEventMillis: Int64 { state.withLock { $0.newestEventMillis } }

    /// Applies this partition's records, `records[positions]` (in offset order; `positions` is not
    /// empty), commits the changed states with the input offset after the last one, and returns
    /// the changelog records of the batch (`batch` is its id in their headers). The records stay
    /// where the consumer put them: a batch's partitions read one shared array, and no record is
    /// copied. Records below the input offset already committed
    /// are skipped: a batch fetched before a revocation and the partition's re-assignment reached
    /// the writer is not applied twice. A failed batch leaves the state cache empty (it may hold
    /// states that were never committed), and the writer refuses every later batch with the same
    /// error: the service stops and resumes from the committed offsets.
    func write(_ records: [ConsumedRecord], at positions: [Int], batch: UInt64) throws(FeatureStoreError) -> PartitionBatch {
        try state.withLock { (state: inout State) throws(FeatureStoreError) -> PartitionBatch in
            if let failure = state.failure { throw failure }
            do throws(FeatureStoreError) {
                return try write(records, at: positions, batch: batch, state: &state)
            } catch {
                state.failure = error
                throw error
            }
        }
    }

    private func write(
        _ records: [ConsumedRecord], at positions: [Int], batch: UInt64, state: inout State
    ) throws(FeatureStoreError) -> PartitionBatch {
        let cpuStart = threadCPUSeconds()
        defer { context.metrics.writeCPU.increment(by: threadCPUSeconds() - cpuStart) }
        var cache = StateCache(capacity: context.stateCacheEntities)
        swap(&cache, &state.cache)
        let committed = state.inputNext ?? .min
        let fresh = positions[(positions.firstIndex { records[$0].offset >= committed } ?? positions.endIndex)...]
        let (changes, snapshots, published, newestMillis) = try apply(records, at: fresh, state: &state, cache: &cache)
        let last = records[positions[positions.count - 1]]
        let inputNext = max(last.offset + 1, committed)
        try store.commit(changes, snapshots: snapshots, inputNext: inputNext)
        state.cache = cache
        state.inputNext = inputNext
        if !changes.isEmpty { context.metrics.writeBatchSize.record(Double(changes.count)) }
        if !snapshots.isEmpty { context.metrics.historySnapshots.increment(by: Int64(snapshots.count)) }
        return PartitionBatch(
            outgoing: Self.publication(of: published, topic: context.featuresTopic, partition: partition, batch: batch, inputNext: inputNext),
            written: Written(store: store, inputNext: inputNext, changes: changes.count), last: last, newestMillis: newestMillis)
    }

    /// Deletes history older than `retentionMillis` before the newest event time applied.
    func pruneHistory(retentionMillis: Int64) throws(FeatureStoreError) {
        let newest = newestEventMillis
        guard newest > .min else { return }
        try store.pruneHistory(before: newest - retentionMillis)
    }

    // MARK: - Applying

    /// One `loop.features` record to publish: an entity's key (its UTF-8 bytes) and state, and
    /// the score request's offset when it is the state as of that request.
    typealias Publication = (key: [UInt8], bytes: [UInt8], requestOffset: Int64?)

    /// One decoded event of a batch: its entity's slot, time, type and input offset (its field
    /// values are its row of the value rows).
    private struct DecodedEvent {
        var slot: Int
        var time: Double
        var type: String
        var offset: Int64
    }

    private static let scoreRequestType = EventType.scoreRequest.description

    /// An event time in seconds as milliseconds.
    static func millis(_ seconds: Double) -> Int64 { Int64((seconds * 1000).rounded()) }

    /// Applies `records[positions]` in offset order; returns the changed entities' records (one per
    /// entity, its latest state), the history snapshots taken inside the batch (an entity's state
    /// just before an event moves its latest event time into a later history interval), the
    /// records to publish (see ``ChangelogHeaders``) and the newest event time.
    ///
    /// States come from `cache` (taken out while they change) or else from SQLite; every state
    /// the batch loaded goes back into `cache`, to be kept once the batch is committed.
    private func apply(
        _ records: [ConsumedRecord], at positions: ArraySlice<Int>, state: inout State, cache: inout StateCache
    ) throws(FeatureStoreError) -> ([EntityChange], [EntityChange], [Publication], Int64) {
        // Decode: each event's field values go to its row of one reused buffer; each entity gets
        // a slot, so it is read and decoded once per batch, whatever number of events it has.
        let (schema, decoder, logger, store, partition) = (context.schema, context.decoder, context.logger, store, partition)
        let fieldCount = decoder.fieldCount
        var valueRows: [Double] = []
        swap(&valueRows, &state.valueRows)
        defer { swap(&valueRows, &state.valueRows) }
        var encodeScratch: [UInt8] = []
        swap(&encodeScratch, &state.encodeScratch)
        defer { swap(&encodeScratch, &state.encodeScratch) }
        /// The encoded record of a state, through the reused scratch memory.
        func encode(_ state: EntityFeatureState) -> [UInt8] { state.encoded(scratch: &encodeScratch) }
        if valueRows.count < positions.count * fieldCount {
            valueRows = Array(repeating: .nan, count: positions.count * fieldCount)
        }
        var events: [DecodedEvent] = []
        events.reserveCapacity(positions.count)
        var slots: [String: Int] = [:]
        slots.reserveCapacity(positions.count)
        var entities: [String] = []
        /// Each entity's UTF-8 bytes, the key of its changelog records.
        var keys: [[UInt8]] = []
        var invalid = 0
        var ignored = 0
        valueRows.withUnsafeMutableBufferPointer { rows in
            records.withUnsafeBufferPointer { records in
                for position in positions {
                    let first = events.count * fieldCount
                    switch decoder.decode(records[position], values: UnsafeMutableBufferPointer(rebasing: rows[first..<(first + fieldCount)])) {
                    case .event(let entity, let key, let time, let type):
                        let slot: Int
                        if let known = slots[entity] {
                            slot = known
                        } else {
                            slot = entities.count
                            slots[entity] = slot
                            entities.append(entity)
                            keys.append(key)
                        }
                        events.append(DecodedEvent(slot: slot, time: time, type: type, offset: records[position].offset))
                    case .ignored:
                        ignored += 1
                    case .invalid(let reason):
                        invalid += 1
                        logger.debug("invalid event", metadata: [
                            "kafka.partition": "\(partition)", "kafka.offset": "\(records[position].offset)", "error.message": "\(reason)"])
                    }
                }
            }
        }
        var states: [EntityFeatureState?] = Array(repeating: nil, count: entities.count)
        var isNew = Array(repeating: true, count: entities.count)
        var uncached: [Int] = []
        for index in entities.indices {
            // Straight from the cache into the slot: no copy of the state (whose parts are likely
            // out of the CPU's caches, so every reference count touched costs a miss).
            states[index] = cache.take(entities[index])
            if states[index] != nil {
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
        var newestMillis = state.newestEventMillis
        valueRows.withUnsafeBufferPointer { rows in
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
                        if endsWithRequest[index] { published.append((keys[index], encode(state), event.offset)) }
                        newestMillis = max(newestMillis, eventMillis)
                    case .late:
                        late += 1
                    }
                } catch {
                    invalid += 1
                }
            }
        }
        state.newestEventMillis = newestMillis
        var changes: [EntityChange] = []
        changes.reserveCapacity(entities.count)
        var added = 0
        // Each state leaves its slot once: encoded if it changed, then moved into the cache.
        for index in entities.indices {
            guard let state = states[index].take() else { continue }
            if changed[index] {
                if isNew[index] { added += 1 }
                let bytes = encode(state)
                changes.append(EntityChange(entity: entities[index], bytes: bytes, latestMillis: state.latestEventTime.map(Self.millis)))
                if !endsWithRequest[index] { published.append((keys[index], bytes, nil)) }
            }
            if changed[index] || !isNew[index] { cache.put(entities[index], state) }
        }
        state.entityCount += added
        let metrics = context.metrics
        metrics.eventsApplied.increment(by: Int64(applied))
        if late > 0 { metrics.eventsLate.increment(by: Int64(late)) }
        if invalid > 0 { metrics.eventsInvalid.increment(by: Int64(invalid)) }
        if ignored > 0 { metrics.eventsIgnored.increment(by: Int64(ignored)) }
        return (changes, snapshots, published, newestMillis)
    }

    /// The changelog records of one partition batch.
    static func publication(
        of states: [Publication], topic: String, partition: Int32, batch: UInt64, inputNext: Int64
    ) -> [OutgoingRecord] {
        guard !states.isEmpty else { return [] }
        let headers = ChangelogHeaders.Maker(batch: batch, count: states.count, inputNext: inputNext)
        return states.enumerated().map { index, entry in
            OutgoingRecord(
                topic: topic, key: entry.key, value: entry.bytes,
                headers: headers.headers(index: index, requestOffset: entry.requestOffset), partition: partition)
        }
    }
}

/// Threads that write the partitions of batches: partition `p` always on lane `p % lanes`, in
/// the order its batches were queued, so a partition's memory is allocated and freed by one thread
/// (glibc's malloc keeps an arena per thread; frees from another thread contend for its lock).
/// A batch rarely holds every partition in even shares (a fetch brings long runs of one
/// partition), so a lane that finishes its part of a batch goes on with its part of the next.
final class WriteLanes: Sendable {
    private let queues: [DispatchQueue]

    /// `count` lanes (at least one).
    init(count: Int) {
        queues = (0..<max(1, count)).map { DispatchQueue(label: "feature-store.write-lane-\($0)", qos: .userInitiated) }
    }

    /// Queues the partition batches of `jobs` (each writer's records are `records[positions]`),
    /// each on its partition's lane behind what that lane already holds, and returns at once.
    func submit(_ records: [ConsumedRecord], _ jobs: [(writer: PartitionWriter, positions: [Int], batch: UInt64)]) -> LaneWrites {
        let writes = LaneWrites(count: jobs.count)
        for (index, job) in jobs.enumerated() {
            queues[Int(job.writer.partition) % queues.count].async(group: writes.group) {
                writes.finish(index, Result { () throws(FeatureStoreError) in try job.writer.write(records, at: job.positions, batch: job.batch) })
            }
        }
        return writes
    }
}

/// The partition batches of one batch, queued on the write lanes.
final class LaneWrites: Sendable {
    fileprivate let group = DispatchGroup()
    private let results: Mutex<[Result<PartitionBatch, FeatureStoreError>?]>

    fileprivate init(count: Int) { results = Mutex(Array(repeating: nil, count: count)) }

    fileprivate func finish(_ index: Int, _ outcome: Result<PartitionBatch, FeatureStoreError>) {
        results.withLock { $0[index] = outcome }
    }

    /// Each partition batch's outcome in the order they were queued, once all are written.
    func outcomes() async -> [Result<PartitionBatch, FeatureStoreError>] {
        await withCheckedContinuation { continuation in
            group.notify(queue: .global()) { continuation.resume() }
        }
        return results.withLock { $0.map { $0! } }
    }
}

/// CPU time of the calling thread so far, in seconds (Linux's `RUSAGE_THREAD`; the process's
/// elsewhere).
func threadCPUSeconds() -> Double {
    var usage = rusage()
    #if os(Linux)
    getrusage(__rusage_who_t(1), &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
    return user + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
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
    mutating func put(_ entity: String, _ state: consuming EntityFeatureState) {
        guard generationSize > 0 else { return }
        if recent.count >= generationSize {
            older = recent
            recent = [:]
            recent.reserveCapacity(generationSize)
        }
        recent[entity] = state
    }
}

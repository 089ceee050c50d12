import Contracts
import Foundation
import Kafka
import Logging
import Prometheus
import Synchronization

/// Why the writer could not finish a batch. Retrying later can help (the broker was unavailable
/// or the writer was stopping); events of a failed batch that were written count as seen.
public struct WriteError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var isRetryable: Bool { true }
    public var description: String { message }
}

/// The single writer of `loop.events` and `loop.events.dlq`.
///
/// Callers validate on their own tasks and ``enqueue(_:inputOffsets:receivedAt:)`` the results (or
/// ``submit(_:inputOffsets:receivedAt:)`` them and wait); submissions are written in the order they were
/// enqueued. One
/// loop takes every waiting submission at once and starts a cycle: claim the dedupe keys and
/// enqueue all new events and dead letters to the producer. Up to ``maxInFlight`` cycles are in
/// flight at once; a second task completes them strictly in order: await the acknowledgements,
/// persist the key hashes, the input offsets and the output marks in one SQLite transaction, and
/// only then answer the callers (who mark Kafka offsets processed or answer HTTP). Cycles are
/// enqueued in order, so in each output partition a cycle's records lie after the previous
/// cycle's: the output marks stay exact (everything before them is persisted) and recovery after a
/// crash reads only past them.
public final class EventWriter: Sendable {
    struct Job {
        var items: [WriteItem]
        var inputOffsets: [TopicPartition: Int64]
        var receivedAt: Date
        var submission: Submission
    }

    /// One enqueued submission: its outcomes once they are acknowledged and persisted.
    public final class Submission: Sendable {
        private enum Phase {
            case waiting(CheckedContinuation<[EventOutcome], any Error>?)
            case answered(Result<[EventOutcome], any Error>)
        }

        private let phase: Mutex<Phase>

        init() { phase = Mutex(.waiting(nil)) }

        init(failure: any Error) { phase = Mutex(.answered(.failure(failure))) }

        /// Each input's outcome, in order, once everything is acknowledged and persisted.
        /// - Throws: ``WriteError`` when the batch could not be written or the writer has stopped.
        public func outcomes() async throws -> [EventOutcome] {
            try await withCheckedThrowingContinuation { continuation in
                let answer = phase.withLock { phase -> Result<[EventOutcome], any Error>? in
                    switch phase {
                    case .answered(let result): return result
                    case .waiting:
                        phase = .waiting(continuation)
                        return nil
                    }
                }
                if let answer { continuation.resume(with: answer) }
            }
        }

        /// Answers the submission (once).
        func answer(_ result: Result<[EventOutcome], any Error>) {
            let waiter = phase.withLock { phase -> CheckedContinuation<[EventOutcome], any Error>? in
                guard case .waiting(let waiter) = phase else { return nil }
                phase = .answered(result)
                return waiter
            }
            waiter?.resume(with: result)
        }
    }

    private struct State {
        var queue: [Job] = []
        var queuedItems = 0
        /// Items submitted and not yet answered (waiting or in a cycle in flight).
        var pendingItems = 0
        var wakeUp: CheckedContinuation<Void, Never>?
        var stopped = false
        var inFlight = 0
        var slotFreed: CheckedContinuation<Void, Never>?
        /// A cycle carrying raw input offsets failed: later cycles must not persist input offsets,
        /// or a restart would skip the failed records.
        var inputBroken = false
    }

    /// A started cycle, waiting for its acknowledgements.
    private struct Cycle {
        var jobs: [Job]
        var outcomes: [[EventOutcome]]
        /// Per produced record, the dedupe hash it claims (events) or `nil` (dead letters).
        var recordHashes: [UInt64?]
        var skipped: [SourcePosition]
        var delivery: KafkaProducer.PendingDelivery
        var nowMs: Int64
    }

    let producer: KafkaProducer
    let store: DedupeStore
    let metrics: IngestMetrics
    let logger: Logger
    /// Most items one cycle takes (whole submissions are never split).
    let cycleItems: Int
    /// Most cycles enqueued and not yet completed.
    let maxInFlight: Int
    private let state = Mutex(State())
    /// Raw records dead-lettered before a crash but not marked processed (from recovery).
    private let alreadyDeadLettered = Mutex<Set<SourcePosition>>([])

    public init(
        producer: KafkaProducer, store: DedupeStore, metrics: IngestMetrics, logger: Logger, cycleItems: Int = 20_000,
        maxInFlight: Int = 4
    ) {
        self.producer = producer
        self.store = store
        self.metrics = metrics
        self.logger = logger
        self.cycleItems = cycleItems
        self.maxInFlight = max(1, maxInFlight)
    }

    /// Events waiting for a cycle.
    public var queuedItems: Int { state.withLock { $0.queuedItems } }

    /// Events submitted and not yet answered: waiting for a cycle or in a cycle not yet
    /// acknowledged and persisted. HTTP requests are refused with 503 above a limit.
    public var pendingItems: Int { state.withLock { $0.pendingItems } }

    /// Marks `jobs` answered.
    private func answered(_ jobs: [Job]) {
        let count = jobs.reduce(0) { $0 + $1.items.count }
        let pending = state.withLock { state -> Int in
            state.pendingItems -= count
            return state.pendingItems
        }
        metrics.queueDepth.set(Double(pending))
        metrics.producerQueue.set(Double(producer.outstandingRecords))
    }

    /// Raw records recovery found in the DLQ: replaying them does not dead-letter them again.
    func skipDeadLetters(_ positions: Set<SourcePosition>) {
        alreadyDeadLettered.withLock { $0.formUnion(positions) }
    }

    /// Writes `items` and returns each one's outcome, in order, once everything is acknowledged
    /// and persisted. `inputOffsets` (next raw offset per partition) are persisted with them.
    /// - Throws: ``WriteError`` when the batch could not be written or the writer has stopped.
    public func submit(
        _ items: [WriteItem], inputOffsets: [TopicPartition: Int64] = [:], receivedAt: Date = Date()
    ) async throws -> [EventOutcome] {
        try await enqueue(items, inputOffsets: inputOffsets, receivedAt: receivedAt).outcomes()
    }

    /// Queues `items` without waiting: submissions are written, persisted and answered in the order
    /// of these calls, so a caller can keep several in flight. `inputOffsets` (next raw offset per
    /// partition) are persisted with them.
    public func enqueue(
        _ items: [WriteItem], inputOffsets: [TopicPartition: Int64] = [:], receivedAt: Date = Date()
    ) -> Submission {
        let submission = Submission()
        let (accepted, wake) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
            guard !state.stopped else { return (false, nil) }
            state.queue.append(Job(items: items, inputOffsets: inputOffsets, receivedAt: receivedAt, submission: submission))
            state.queuedItems += items.count
            state.pendingItems += items.count
            defer { state.wakeUp = nil }
            return (true, state.wakeUp)
        }
        guard accepted else { return Submission(failure: WriteError(message: "ingest is shutting down")) }
        metrics.queueDepth.set(Double(pendingItems))
        wake?.resume()
        return submission
    }

    /// Stops after the submissions already queued; later ones fail.
    public func stop() {
        let wake = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.stopped = true
            defer { state.wakeUp = nil }
            return state.wakeUp
        }
        wake?.resume()
    }

    /// The writer loop; returns after ``stop()`` once the queue is empty and every cycle completed.
    public func run() async {
        let (cycles, started) = AsyncStream.makeStream(of: Cycle.self)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await cycle in cycles {
                    await self.complete(cycle)
                    self.freeSlot()
                }
            }
            while true {
                let jobs = await nextJobs()
                guard !jobs.isEmpty else { break }
                await takeSlot()
                started.yield(await start(jobs))
            }
            started.finish()
        }
    }

    private func takeSlot() async {
        while true {
            let taken = state.withLock { state -> Bool in
                guard state.inFlight < maxInFlight else { return false }
                state.inFlight += 1
                return true
            }
            if taken { return }
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.inFlight < maxInFlight { return true }
                    state.slotFreed = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }

    private func freeSlot() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.inFlight -= 1
            defer { state.slotFreed = nil }
            return state.slotFreed
        }
        waiter?.resume()
    }

    private func nextJobs() async -> [Job] {
        while true {
            let (jobs, stopped) = state.withLock { state -> ([Job], Bool) in
                var taken: [Job] = []
                var count = 0
                while let job = state.queue.first, taken.isEmpty || count + job.items.count <= cycleItems {
                    taken.append(state.queue.removeFirst())
                    count += job.items.count
                }
                state.queuedItems -= count
                return (taken, state.stopped)
            }
            if !jobs.isEmpty || stopped {
                return jobs
            }
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if !state.queue.isEmpty || state.stopped { return true }
                    state.wakeUp = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }

    // MARK: - One cycle

    /// Claims the keys of `jobs` and enqueues their records.
    private func start(_ jobs: [Job]) async -> Cycle {
        let nowMs = DedupeStore.nowMs()
        var hashes: [UInt64] = []
        for job in jobs {
            for index in job.items.indices {
                if case .event(let event) = job.items[index] { hashes.append(event.dedupeHash) }
            }
        }
        let fresh = store.claim(hashes, nowMs: nowMs)

        // Outcomes, and the records to produce with the hash each event record claims.
        var outcomes: [[EventOutcome]] = []
        var records: [OutgoingRecord] = []
        var recordHashes: [UInt64?] = []
        records.reserveCapacity(hashes.count)
        recordHashes.reserveCapacity(hashes.count)
        var hashIndex = 0
        let skip = alreadyDeadLettered.withLock { $0.isEmpty ? [] : $0 }
        var skipped: [SourcePosition] = []
        for job in jobs {
            var jobOutcomes: [EventOutcome] = []
            jobOutcomes.reserveCapacity(job.items.count)
            for index in job.items.indices {
                switch job.items[index] {
                case .event(let event):
                    if fresh[hashIndex] {
                        records.append(event.record)
                        recordHashes.append(event.dedupeHash)
                        jobOutcomes.append(.accepted)
                    } else {
                        jobOutcomes.append(.duplicate)
                    }
                    hashIndex += 1
                case .rejected(let rejection, let deadLetter, let position):
                    if let position, skip.contains(position) {
                        skipped.append(position)
                    } else {
                        records.append(deadLetter)
                        recordHashes.append(nil)
                    }
                    jobOutcomes.append(.rejected(rejection))
                }
            }
            outcomes.append(jobOutcomes)
        }
        let delivery = await producer.enqueue(records)
        metrics.producerQueue.set(Double(producer.outstandingRecords))
        return Cycle(jobs: jobs, outcomes: outcomes, recordHashes: recordHashes, skipped: skipped, delivery: delivery, nowMs: nowMs)
    }

    /// Awaits the acknowledgements of `cycle`, persists it and answers its callers.
    private func complete(_ cycle: Cycle) async {
        let jobs = cycle.jobs
        let recordHashes = cycle.recordHashes
        var reports: [DeliveryReport?]
        var failure: KafkaError?
        do {
            reports = try await cycle.delivery.reports()
        } catch {
            failure = error
            reports = error.deliveredReports.count == recordHashes.count
                ? error.deliveredReports : Array(repeating: nil, count: recordHashes.count)
        }

        var written: [UInt64] = []
        var unwritten: [UInt64] = []
        written.reserveCapacity(recordHashes.count)
        // The few output partitions a cycle touches, searched linearly: cheaper per record than
        // hashing the topic name.
        var ends: [(topic: String, partition: Int32, next: Int64)] = []
        for (index, report) in reports.enumerated() {
            if let report {
                if let slot = ends.firstIndex(where: { $0.partition == report.partition && $0.topic == report.topic }) {
                    ends[slot].next = max(ends[slot].next, report.offset + 1)
                } else {
                    ends.append((report.topic, report.partition, report.offset + 1))
                }
                if let hash = recordHashes[index] { written.append(hash) }
            } else if let hash = recordHashes[index] {
                unwritten.append(hash)
            }
        }
        store.release(unwritten)
        let marks = Dictionary(ends.map { (TopicPartition(topic: $0.topic, partition: $0.partition), $0.next) }, uniquingKeysWith: max)
        var inputOffsets: [TopicPartition: Int64] = [:]
        for job in jobs {
            for (partition, next) in job.inputOffsets { inputOffsets[partition] = max(inputOffsets[partition] ?? 0, next) }
        }
        let persistInputs = state.withLock { state -> Bool in
            if failure != nil && !inputOffsets.isEmpty { state.inputBroken = true }
            return !state.inputBroken
        }
        do {
            try store.persist(
                hashes: written, inputOffsets: persistInputs ? inputOffsets : [:], outputMarks: marks, nowMs: cycle.nowMs)
            try store.prune(nowMs: cycle.nowMs)
        } catch {
            store.release(written)
            fail(jobs, WriteError(message: "the dedupe store failed: \(error)"))
            return
        }
        if let failure {
            logger.warning("batch not fully written", metadata: ["error.message": "\(failure)", "ingest.records": "\(recordHashes.count)"])
            fail(jobs, WriteError(message: "the broker did not acknowledge every record: \(failure.reason)"))
            return
        }
        if !cycle.skipped.isEmpty { alreadyDeadLettered.withLock { $0.subtract(cycle.skipped) } }

        answered(jobs)
        let now = Date()
        metrics.batchEvents.record(Double(cycle.outcomes.reduce(0) { $0 + $1.count }))
        // Counted per cycle, then added to the counters once per label.
        var accepted: [EventKind: Int64] = [:]
        var duplicate: [EventKind: Int64] = [:]
        var rejected: [RejectReason: Int64] = [:]
        for (job, jobOutcomes) in zip(jobs, cycle.outcomes) {
            metrics.latency.record(Duration.seconds(max(0, now.timeIntervalSince(job.receivedAt))))
            for (item, outcome) in zip(job.items, jobOutcomes) {
                switch (item, outcome) {
                case (.event(let event), .accepted): accepted[event.kind, default: 0] += 1
                case (.event(let event), .duplicate): duplicate[event.kind, default: 0] += 1
                case (_, .rejected(let rejection)): rejected[rejection.reason, default: 0] += 1
                default: break
                }
            }
        }
        for (kind, count) in accepted { metrics.accepted[kind]?.increment(by: count) }
        for (kind, count) in duplicate { metrics.duplicate[kind]?.increment(by: count) }
        for (reason, count) in rejected { metrics.rejected[reason]?.increment(by: count) }
        for (job, jobOutcomes) in zip(jobs, cycle.outcomes) {
            if !persistInputs && !job.inputOffsets.isEmpty {
                job.submission.answer(.failure(WriteError(message: "an earlier batch of raw records was not written; restart to replay it")))
            } else {
                job.submission.answer(.success(jobOutcomes))
            }
        }
    }

    private func fail(_ jobs: [Job], _ error: WriteError) {
        answered(jobs)
        for job in jobs { job.submission.answer(.failure(error)) }
    }
}

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
/// Callers validate on their own tasks and ``submit(_:inputOffsets:receivedAt:)`` the results; one
/// loop takes every waiting submission at once and runs a cycle: claim the dedupe keys, produce all
/// new events and dead letters in one send, await the acknowledgements, then persist the keys, the
/// input offsets and the output marks in one SQLite transaction, and only then answer the callers
/// (who mark Kafka offsets processed or answer HTTP). One cycle at a time makes the output marks
/// exact: everything before them is persisted, so recovery after a crash reads only past them.
public final class EventWriter: Sendable {
    struct Job {
        var items: [WriteItem]
        var inputOffsets: [TopicPartition: Int64]
        var receivedAt: Date
        var continuation: CheckedContinuation<[EventOutcome], any Error>
    }

    private struct State {
        var queue: [Job] = []
        var queuedItems = 0
        var wakeUp: CheckedContinuation<Void, Never>?
        var stopped = false
    }

    let producer: KafkaProducer
    let store: DedupeStore
    let metrics: IngestMetrics
    let logger: Logger
    /// Most items one cycle takes (whole submissions are never split).
    let cycleItems: Int
    private let state = Mutex(State())
    /// Raw records dead-lettered before a crash but not marked processed (from recovery).
    private let alreadyDeadLettered = Mutex<Set<SourcePosition>>([])

    public init(producer: KafkaProducer, store: DedupeStore, metrics: IngestMetrics, logger: Logger, cycleItems: Int = 50_000) {
        self.producer = producer
        self.store = store
        self.metrics = metrics
        self.logger = logger
        self.cycleItems = cycleItems
    }

    /// Events waiting for a cycle.
    public var queuedItems: Int { state.withLock { $0.queuedItems } }

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
        try await withCheckedThrowingContinuation { continuation in
            let (accepted, wake) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
                guard !state.stopped else { return (false, nil) }
                state.queue.append(Job(items: items, inputOffsets: inputOffsets, receivedAt: receivedAt, continuation: continuation))
                state.queuedItems += items.count
                defer { state.wakeUp = nil }
                return (true, state.wakeUp)
            }
            guard accepted else {
                continuation.resume(throwing: WriteError(message: "ingest is shutting down"))
                return
            }
            metrics.queueDepth.set(Double(queuedItems))
            wake?.resume()
        }
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

    /// The writer loop; returns after ``stop()`` once the queue is empty.
    public func run() async {
        while true {
            let jobs = await nextJobs()
            guard !jobs.isEmpty else { return }
            await cycle(jobs)
        }
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
                metrics.queueDepth.set(Double(queuedItems))
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

    private func cycle(_ jobs: [Job]) async {
        let nowMs = DedupeStore.nowMs()
        var keys: [String] = []
        for job in jobs {
            for case .event(let event) in job.items { keys.append(event.dedupeKey) }
        }
        let fresh: [Bool]
        do {
            fresh = try store.claim(keys, nowMs: nowMs)
        } catch {
            fail(jobs, WriteError(message: "the dedupe store failed: \(error)"))
            return
        }

        // Outcomes, and the records to produce with the key each event record claims.
        var outcomes: [[EventOutcome]] = []
        var records: [OutgoingRecord] = []
        var recordKeys: [String?] = []
        var keyIndex = 0
        let skip = alreadyDeadLettered.withLock { $0.isEmpty ? [] : $0 }
        var skipped: [SourcePosition] = []
        for job in jobs {
            var jobOutcomes: [EventOutcome] = []
            jobOutcomes.reserveCapacity(job.items.count)
            for item in job.items {
                switch item {
                case .event(let event):
                    if fresh[keyIndex] {
                        records.append(event.record)
                        recordKeys.append(event.dedupeKey)
                        jobOutcomes.append(.accepted)
                    } else {
                        jobOutcomes.append(.duplicate)
                    }
                    keyIndex += 1
                case .rejected(let rejection, let deadLetter, let position):
                    if let position, skip.contains(position) {
                        skipped.append(position)
                    } else {
                        records.append(deadLetter)
                        recordKeys.append(nil)
                    }
                    jobOutcomes.append(.rejected(rejection))
                }
            }
            outcomes.append(jobOutcomes)
        }

        var reports: [DeliveryReport?]
        var failure: KafkaError?
        do {
            reports = try await producer.send(records)
        } catch {
            failure = error
            reports = error.deliveredReports.count == records.count ? error.deliveredReports : Array(repeating: nil, count: records.count)
        }

        var written: [String] = []
        var unwritten: [String] = []
        var marks: [TopicPartition: Int64] = [:]
        for (index, report) in reports.enumerated() {
            if let report {
                let partition = TopicPartition(topic: report.topic, partition: report.partition)
                marks[partition] = max(marks[partition] ?? 0, report.offset + 1)
                if let key = recordKeys[index] { written.append(key) }
            } else if let key = recordKeys[index] {
                unwritten.append(key)
            }
        }
        store.release(unwritten)
        var inputOffsets: [TopicPartition: Int64] = [:]
        if failure == nil {
            for job in jobs {
                for (partition, next) in job.inputOffsets { inputOffsets[partition] = max(inputOffsets[partition] ?? 0, next) }
            }
        }
        do {
            try store.persist(keys: written, inputOffsets: inputOffsets, outputMarks: marks, nowMs: nowMs)
        } catch {
            store.release(written)
            fail(jobs, WriteError(message: "the dedupe store failed: \(error)"))
            return
        }
        if let failure {
            logger.warning("batch not fully written", metadata: ["error.message": "\(failure)", "ingest.records": "\(records.count)"])
            fail(jobs, WriteError(message: "the broker did not acknowledge every record: \(failure.reason)"))
            return
        }
        if !skipped.isEmpty { alreadyDeadLettered.withLock { $0.subtract(skipped) } }

        let now = Date()
        metrics.batchEvents.record(Double(outcomes.reduce(0) { $0 + $1.count }))
        for (job, jobOutcomes) in zip(jobs, outcomes) {
            metrics.latency.record(Duration.seconds(max(0, now.timeIntervalSince(job.receivedAt))))
            for (item, outcome) in zip(job.items, jobOutcomes) {
                switch (item, outcome) {
                case (.event(let event), .accepted): metrics.accepted[event.kind]?.increment()
                case (.event(let event), .duplicate): metrics.duplicate[event.kind]?.increment()
                case (_, .rejected(let rejection)): metrics.rejected[rejection.reason]?.increment()
                default: break
                }
            }
            job.continuation.resume(returning: jobOutcomes)
        }
    }

    private func fail(_ jobs: [Job], _ error: WriteError) {
        for job in jobs { job.continuation.resume(throwing: error) }
    }
}

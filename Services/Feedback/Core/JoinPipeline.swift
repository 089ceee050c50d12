import Kafka
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the join pipeline's batches end: the service sends labeled examples to `loop.labeled` and
/// marks the consumer's offsets; a benchmark or a test can acknowledge in place.
public protocol JoinOutput: Sendable {
    /// Sends a batch's labeled examples and waits for every acknowledgement.
    func send(_ outbox: [OutboxEntry]) async throws -> [DeliveryReport]
    /// Called once per batch, in order, after the monitor has counted it.
    func applied(_ result: JoinBatchResult)
    /// A batch's labeled examples are confirmed: its records' offsets may be committed.
    func processed(_ records: [ConsumedRecord])
    /// A stage failed: end the batches so the pipeline stops now rather than at the next batch.
    func stop() async
}

/// The feedback service's data path as stages on tasks of their own, so that consecutive batches
/// use more than one core: decoding later batches (each on a task of its own, so several decode at
/// once), joining and storing batch N+1 (one SQLite transaction with its input offsets), and
/// monitoring batch N while its labeled examples are acknowledged. Joining and monitoring take the
/// batches in order; at most ``batchesInFlight`` are between being consumed and the confirmation
/// of their outbox.
public struct JoinPipeline: Sendable {
    public let decoder: InputDecoder
    public let store: JoinStore
    public let monitor: Monitor
    /// Batches decoded, applied or waiting for acknowledgements at once.
    public let batchesInFlight: Int
    /// Thread CPU time spent in each stage so far.
    public let stageTimes = JoinStageTimes()

    /// A pipeline over `store` and `monitor`; `batchesInFlight` is at least 1.
    public init(decoder: InputDecoder, store: JoinStore, monitor: Monitor, batchesInFlight: Int = 4) {
        self.decoder = decoder
        self.store = store
        self.monitor = monitor
        self.batchesInFlight = max(1, batchesInFlight)
    }

    /// Runs every batch of `batches` through the stages until the batches end or a stage fails
    /// (then ``JoinOutput/stop()`` is called and the error rethrown). Returns once every applied
    /// batch is confirmed.
    public func run<Batches: AsyncSequence & Sendable>(_ batches: Batches, output: some JoinOutput) async throws
    where Batches.Element == [ConsumedRecord] {
        let (decoded, decodedInput) = AsyncStream.makeStream(of: DecodingBatch.self)
        let (applied, appliedInput) = AsyncStream.makeStream(of: AppliedBatch.self)
        let (slots, freed) = AsyncStream.makeStream(of: Void.self)
        for _ in 0..<batchesInFlight { freed.yield() }
        let (decoder, store, monitor, times) = (decoder, store, monitor, stageTimes)

        /// Runs a stage; a failure stops the input first, so the other stages end too.
        func stage(_ body: @escaping @Sendable () async throws -> Void) -> @Sendable () async throws -> Void {
            {
                do {
                    try await body()
                } catch {
                    await output.stop()
                    throw error
                }
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask(operation: stage {
                defer { decodedInput.finish() }
                var slot = slots.makeAsyncIterator()
                for try await records in batches {
                    guard await slot.next() != nil else { break }
                    let inputs = Task { times.measure(.decode) { decoder.decode(records) } }
                    decodedInput.yield(DecodingBatch(records: records, inputs: inputs))
                }
            })
            group.addTask(operation: stage {
                defer { appliedInput.finish() }
                for await batch in decoded {
                    let inputs = await batch.inputs.value
                    let result = try times.measure(.apply) { () throws(FeedbackError) in try store.apply(inputs) }
                    let outbox = result.outbox
                    let delivery = Task { try await output.send(outbox) }
                    appliedInput.yield(AppliedBatch(records: batch.records, result: result, delivery: delivery))
                }
            })
            group.addTask(operation: stage {
                defer { freed.finish() }
                for await batch in applied {
                    times.measure(.monitor) {
                        monitor.observe(predictions: batch.result.predictions)
                        monitor.observe(labeled: batch.result.labeled)
                        if let time = batch.result.maxEventTimeMs { monitor.advance(to: time) }
                        output.applied(batch.result)
                    }
                    let reports = try await batch.delivery.value
                    try times.measure(.confirm) { () throws(FeedbackError) in
                        try store.confirmDelivered(batch.result.outbox, reports: reports)
                    }
                    output.processed(batch.records)
                    freed.yield()
                }
            })
            try await group.waitForAll()
        }
    }
}

/// A consumed batch whose decoding has started.
private struct DecodingBatch: Sendable {
    var records: [ConsumedRecord]
    var inputs: Task<[InputRecord], Never>
}

/// An applied batch whose labeled examples are being delivered.
private struct AppliedBatch: Sendable {
    var records: [ConsumedRecord]
    var result: JoinBatchResult
    var delivery: Task<[DeliveryReport], any Error>
}

/// Thread CPU time the pipeline's stages have spent, in seconds.
public final class JoinStageTimes: Sendable {
    /// The stages' totals.
    public struct Totals: Sendable, Equatable {
        /// Decoding consumed records into join inputs.
        public var decode = 0.0
        /// Joining in memory and storing the batch (one transaction).
        public var apply = 0.0
        /// Counting the batch into quality, drift and estimates.
        public var monitor = 0.0
        /// Removing acknowledged examples from the outbox.
        public var confirm = 0.0
    }

    /// The stages, as ``measure(_:_:)`` names them.
    enum Stage {
        case decode, apply, monitor, confirm
    }

    private let totals = Mutex(Totals())

    /// The totals so far.
    public var current: Totals { totals.withLock { $0 } }

    /// Runs `body` (which must not suspend) and adds the thread CPU time it took to `stage`.
    func measure<T, E: Error>(_ stage: Stage, _ body: () throws(E) -> T) throws(E) -> T {
        let start = Self.threadCPUSeconds()
        defer {
            let spent = Self.threadCPUSeconds() - start
            totals.withLock { totals in
                switch stage {
                case .decode: totals.decode += spent
                case .apply: totals.apply += spent
                case .monitor: totals.monitor += spent
                case .confirm: totals.confirm += spent
                }
            }
        }
        return try body()
    }

    private static func threadCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}

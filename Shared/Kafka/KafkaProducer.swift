import Logging

/// Produces records and reports when the broker acknowledged them.
///
/// A dedicated thread blocks in librdkafka's poll and resumes senders as delivery reports arrive (one
/// per-message opaque pointing into the batch, no lookups, no timers). Idempotence is on by default.
/// The local queue is bounded (``ProducerSettings/maxQueuedMessages``): when it is full a send waits
/// until deliveries free space, or throws ``KafkaError/Code/queueFull`` with
/// ``QueueFullBehavior/fail``.
///
/// Tansu supports the idempotent producer (InitProducerId), so the default works against it.
public final class KafkaProducer: Sendable {
    private let engine: ProducerEngine
    private let logger: Logger

    /// Creates a producer; checks the librdkafka version and logs it.
    public init(config: KafkaConfig, producer: ProducerSettings = .init(), logger: Logger) throws(KafkaError) {
        var properties = try config.properties()
        for (key, value) in try producer.properties() {
            if let other = config.extra[key], other != value, !Self.overridable.contains(key) {
                throw KafkaError(.invalidConfiguration, "extra['\(key)'] = '\(other)' conflicts with ProducerSettings ('\(value)')")
            }
            if config.extra[key] == nil { properties[key] = value }
        }
        self.engine = try ProducerEngine(properties: properties, whenQueueFull: producer.whenQueueFull, logger: logger)
        self.logger = logger
        logger.info(
            "Kafka producer started",
            metadata: ["kafka.librdkafka": "\(Librdkafka.runtimeVersion.1)", "kafka.brokers": "\(config.brokers)"])
    }

    /// Settings whose librdkafka key may be overridden through ``KafkaConfig/extra``.
    private static let overridable: Set<String> = ["linger.ms", "queue.buffering.max.kbytes", "compression.type"]

    deinit { engine.shutdown() }

    /// Sends one record and returns once the broker acknowledged it.
    public func send(_ record: OutgoingRecord) async throws(KafkaError) -> DeliveryReport {
        switch await engine.send([record]) {
        case .delivered(let reports): return reports[0]
        case .partial(let results): return try results[0].get()
        }
    }

    /// Sends a batch and returns once every record is acknowledged, in the order given. If any record
    /// fails, throws ``KafkaError/Code/deliveryFailed`` listing each failure
    /// (``KafkaError/failures``) and the reports of the delivered ones.
    public func send(_ records: [OutgoingRecord]) async throws(KafkaError) -> [DeliveryReport] {
        guard !records.isEmpty else { return [] }
        return try Self.reports(records, await engine.send(records))
    }

    /// Records in the local queue: not yet sent to the broker, or sent and not yet acknowledged.
    public var outstandingRecords: Int { engine.outstanding }

    /// A batch enqueued by ``enqueue(_:)``: ``reports()`` awaits its acknowledgements.
    public struct PendingDelivery: Sendable {
        let engine: ProducerEngine
        let pending: ProducerEngine.PendingSend

        /// Returns once every record is acknowledged, in the order given; throws like
        /// ``KafkaProducer/send(_:)-([OutgoingRecord])``. Call once.
        public func reports() async throws(KafkaError) -> [DeliveryReport] {
            guard !pending.records.isEmpty else { return [] }
            return try KafkaProducer.reports(pending.records, await engine.outcome(of: pending))
        }
    }

    /// Enqueues a batch and returns once every record is in the local queue (waiting for space as
    /// ``ProducerSettings/whenQueueFull`` says), without waiting for the broker. Batches enqueued one
    /// after the other keep that order in each partition, so a caller can keep several in flight and
    /// await their ``PendingDelivery/reports()`` in order.
    public func enqueue(_ records: [OutgoingRecord]) async -> PendingDelivery {
        PendingDelivery(engine: engine, pending: await engine.start(records))
    }

    private static func reports(
        _ records: [OutgoingRecord], _ outcome: SendOutcome
    ) throws(KafkaError) -> [DeliveryReport] {
        let results: [Result<DeliveryReport, KafkaError>]
        switch outcome {
        case .delivered(let reports): return reports
        case .partial(let perRecord): results = perRecord
        }
        var failures: [KafkaError.RecordFailure] = []
        for (index, result) in results.enumerated() {
            if case .failure(let error) = result { failures.append(.init(index: index, error: error)) }
        }
        let first = failures[0].error
        var error = KafkaError(
            first.isFatal ? .fatal : .deliveryFailed,
            "\(failures.count) of \(records.count) records not delivered; first: \(first.reason)",
            isRetriable: failures.allSatisfy(\.error.isRetriable), isFatal: first.isFatal,
            librdkafkaCode: first.librdkafkaCode)
        error.failures = failures
        error.deliveredReports = results.map { try? $0.get() }
        throw error
    }

    /// Waits until every queued record is delivered or failed, for at most `timeout`.
    public func flush(timeout: Duration) async throws(KafkaError) {
        try await engine.flush(timeout: timeout)
    }
}

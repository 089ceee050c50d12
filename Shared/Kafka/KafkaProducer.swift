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
        try await send(records, enqueued: nil)
    }

    /// ``send(_:)``, calling `enqueued` as soon as every record is in the local queue, before the
    /// acknowledgements arrive: a caller that overlaps sends starts the next one from there, so
    /// its batches reach each partition in the order it made them.
    public func send(_ records: [OutgoingRecord], enqueued: (@Sendable () -> Void)?) async throws(KafkaError) -> [DeliveryReport] {
        guard !records.isEmpty else {
            enqueued?()
            return []
        }
        let results: [Result<DeliveryReport, KafkaError>]
        switch await engine.send(records, enqueued: enqueued) {
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

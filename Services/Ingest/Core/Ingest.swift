import Contracts
import Foundation
import Kafka
import Logging
import Prometheus
import ServiceKit
import ServiceLifecycle
import Synchronization

/// The ingest service: validates, dedupes and redacts events into loop.events, rejects to loop.events.dlq.
///
/// Inputs: the raw topic (consumer group, binary and structured mode) and `POST /v1/events`. At
/// start it creates the topics, recovers from a crash (see ``Recovery``), then reports ready and
/// consumes until graceful shutdown.
public struct IngestService: LoopService, Service {
    public static let name = "ingest"
    public static let summary = "validates, dedupes and redacts events into loop.events, rejects to loop.events.dlq"
    public static let defaultAdminPort = 8081
    public static var settings: [any SettingDeclaration] { IngestSettings.declarations }

    let kafka: KafkaConfig
    let logger: Logger
    let readiness: Readiness
    let ingestSettings: IngestSettings
    let layout: TopicLayout
    let intake: Intake
    let store: DedupeStore
    let producer: KafkaProducer
    let writer: EventWriter
    let metrics: IngestMetrics
    let recovered: Flag

    /// Builds the service: checks the PII key against loop.yaml, opens the dedupe store under the
    /// state directory, creates the producer and registers `POST /v1/events`.
    public init(environment: ServiceEnvironment) async throws {
        kafka = environment.kafka
        logger = environment.logger
        readiness = environment.readiness
        ingestSettings = IngestSettings(settings: environment.settings, topicPrefix: environment.config.topics.prefix)
        layout = TopicLayout(config: environment.config)
        let validator = try EventValidator(config: environment.config, piiKey: ingestSettings.piiKey)
        intake = Intake(validator: validator, deadLetterTopic: layout.names.deadLetters)
        try FileManager.default.createDirectory(atPath: environment.stateDirectory, withIntermediateDirectories: true)
        let horizon = Duration.milliseconds(Int64(environment.config.events.dedupeHorizon.seconds * 1000))
        store = try DedupeStore(path: environment.stateDirectory + "/ingest.sqlite", horizon: horizon)
        var producerSettings = ProducerSettings()
        producerSettings.linger = .milliseconds(2)
        producerSettings.deliveryTimeout = ingestSettings.deliveryTimeout
        producer = try KafkaProducer(config: environment.kafka, producer: producerSettings, logger: environment.logger)
        metrics = IngestMetrics(registry: environment.metrics)
        writer = EventWriter(producer: producer, store: store, metrics: metrics, logger: environment.logger)
        recovered = Flag()
        environment.readiness.require(Self.runningCondition)

        let audit = AuditLog(producer: producer, topic: layout.names.audit, service: Self.name, logger: environment.logger)
        let auth = RequireRole<LoopRequestContext>(
            .producer, keys: environment.apiKeys, metrics: environment.metrics, audit: audit.authFailureHook)
        let recovered = self.recovered
        HTTPIngest(intake: intake, writer: writer, settings: ingestSettings, metrics: metrics, ready: { recovered.isSet })
            .register(on: environment.router, auth: auth)
    }

    public func run() async throws {
        try await layout.ensureTopics(kafka: kafka, logger: logger)
        _ = try await Recovery.run(kafka: kafka, names: layout.names, store: store, writer: writer, logger: logger)

        var consumerSettings = ConsumerSettings()
        consumerSettings.bufferedBatches = 2
        let consumer = try KafkaConsumer(
            config: kafka, groupID: ingestSettings.consumerGroup, consumer: consumerSettings, logger: logger)
        try consumer.subscribe(topics: [layout.names.rawEvents], rebalance: RawConsumer.Rebalance(store: store, logger: logger))
        let raw = RawConsumer(consumer: consumer, intake: intake, writer: writer, batchSize: ingestSettings.batchSize)

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await writer.run() }
            group.addTask { await reportLag(logger: logger) }
            recovered.set()
            readiness.satisfy(Self.runningCondition)
            logger.info("ingest running", metadata: ["kafka.topic": "\(layout.names.rawEvents)", "kafka.group": "\(ingestSettings.consumerGroup)"])
            defer {
                writer.stop()
                group.cancelAll()
            }
            try await withGracefulShutdownHandler {
                try await raw.run()
            } onGracefulShutdown: {
                Task { await consumer.close() }
            }
            await consumer.close()
        }
        try? await producer.flush(timeout: .seconds(5))
    }

    /// Sets the consumer-lag gauge every 10 s until cancelled.
    private func reportLag(logger: Logger) async {
        guard let admin = try? KafkaAdmin(config: kafka, logger: logger) else { return }
        while !Task.isCancelled {
            if let lag = try? await admin.lag(group: ingestSettings.consumerGroup, topic: layout.names.rawEvents) {
                metrics.consumerLag.set(Double(lag.total))
            }
            try? await Task.sleep(for: .seconds(10))
        }
    }

    /// The readiness condition met once recovery is done and consuming has started.
    static let runningCondition = "ingest.running"
}

/// A flag set once, read from any task.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

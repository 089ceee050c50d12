import Contracts
import Foundation
import Kafka
import Logging
import Prometheus
import ServiceKit
import ServiceLifecycle

/// The retrainer service: consumes `loop.labeled` into its training store, retrains on the
/// configured triggers (every N labels, every T of event time, a wall-clock schedule, drift and
/// performance alerts on `loop.monitoring`, `POST /v1/retrain`), gates each candidate against the
/// champion on the same time-ordered holdout and keeps the registry on `loop.models`.
///
/// State: `<state-dir>/retrainer.sqlite`. Ready once the registry has been restored from
/// `loop.models` and partitions are assigned.
public struct RetrainerService: LoopService, Service {
    public static let name = "retrainer"
    public static let summary = "retrains, gates and promotes models into loop.models"
    public static let defaultAdminPort = 8085

    /// The readiness conditions this service registers.
    static let restoredCondition = "retrainer.registry_restored"
    static let assignedCondition = "kafka.assigned"

    private let config: LoopConfig
    private let kafka: KafkaConfig
    private let logger: Logger
    private let readiness: Readiness
    private let store: TrainingStore
    private let producer: KafkaProducer
    /// The registry on `loop.models`.
    public let registry: ModelRegistry
    /// The run queue.
    public let coordinator: RetrainingCoordinator
    private let ingestor: LabeledIngestor
    private let alerts: AlertListener
    private let consumed: (stored: Counter, duplicate: Counter, unreadable: Counter)

    public init(environment: ServiceEnvironment) async throws {
        config = environment.config
        kafka = environment.kafka
        logger = environment.logger
        readiness = environment.readiness
        try FileManager.default.createDirectory(atPath: environment.stateDirectory, withIntermediateDirectories: true)
        store = try TrainingStore(path: environment.stateDirectory + "/retrainer.sqlite")
        producer = try KafkaProducer(config: kafka, logger: logger)
        let topics = config.topics.names
        let audit = AuditLog(producer: producer, topic: topics.audit, service: Self.name, logger: logger)
        registry = ModelRegistry(producer: producer, topics: topics, audit: audit, store: store, logger: logger)

        let metrics = environment.metrics
        func runs(_ outcome: String) -> Counter {
            metrics.makeCounter(
                descriptor: MetricNameDescriptor(
                    namespace: "loop", subsystem: "retrainer", metricName: "runs", unitName: "total",
                    helpText: "Training runs by outcome (published, skipped, failed)."),
                labels: [("outcome", outcome)])
        }
        let (published, skipped, failed) = (runs("published"), runs("skipped"), runs("failed"))
        let trainingSeconds = metrics.makeGauge(
            descriptor: MetricNameDescriptor(
                namespace: "loop", subsystem: "retrainer", metricName: "last_training", unitName: "seconds",
                helpText: "Duration of the last training run."))
        coordinator = RetrainingCoordinator(config: config, store: store, registry: registry, logger: logger) { report in
            switch report.outcome {
            case .published: published.increment()
            case .skipped: skipped.increment()
            case .failed: failed.increment()
            }
            trainingSeconds.set(report.trainingSeconds)
        }
        func examples(_ result: String) -> Counter {
            metrics.makeCounter(
                descriptor: MetricNameDescriptor(
                    namespace: "loop", subsystem: "retrainer", metricName: "labeled_examples", unitName: "total",
                    helpText: "Records of loop.labeled by result (stored, duplicate, unreadable)."),
                labels: [("result", result)])
        }
        consumed = (examples("stored"), examples("duplicate"), examples("unreadable"))
        ingestor = LabeledIngestor(
            store: store, coordinator: coordinator, triggers: StreamTriggers(policy: config.retraining),
            topic: topics.labeled, logger: logger)
        alerts = AlertListener(store: store, coordinator: coordinator, enabled: config.retraining.onDriftAlert, logger: logger)

        readiness.require(Self.restoredCondition)
        readiness.require(Self.assignedCondition)
        var audited = environment
        audited.audit = audit.authFailureHook
        RetrainerRoutes.add(to: environment.router, environment: audited, registry: registry, coordinator: coordinator)
    }

    public func run() async throws {
        let topics = config.topics.names
        try await TopicLayout(config: config).ensureTopics(kafka: kafka, logger: logger)
        try await registry.restore(kafka: kafka)
        try await coordinator.resumePending()
        readiness.satisfy(Self.restoredCondition)

        let consumer = try KafkaConsumer(config: kafka, groupID: "\(config.topics.prefix).retrainer", logger: logger)
        try consumer.subscribe(
            topics: [topics.labeled, topics.monitoring],
            rebalance: StoredOffsets(store: store, topic: topics.labeled, readiness: readiness, condition: Self.assignedCondition))
        let (coordinator, ingestor, alerts, consumed, logger) = (coordinator, ingestor, alerts, consumed, logger)
        let schedule = WallClockSchedule(policy: config.retraining)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await coordinator.work() }
            group.addTask {
                for try await batch in consumer.batches(maxRecords: 2000) {
                    let labeled = batch.filter { $0.topic == topics.labeled }
                    let monitoring = batch.filter { $0.topic == topics.monitoring }
                    if !labeled.isEmpty {
                        let result = try await ingestor.process(labeled)
                        consumed.stored.increment(by: Int64(result.inserted))
                        consumed.duplicate.increment(by: Int64(result.duplicates))
                        consumed.unreadable.increment(by: Int64(result.unreadable))
                    }
                    if !monitoring.isEmpty { try await alerts.process(monitoring) }
                    _ = consumer.markProcessed(batch)
                }
            }
            if let schedule {
                group.addTask {
                    try await cancelWhenGracefulShutdown { try await schedule.run(into: coordinator) }
                }
            }
            group.addTask {
                try? await gracefulShutdown()
                logger.info("retrainer stopping: closing the consumer, finishing the run in progress")
                await consumer.close()
                await coordinator.finish()
            }
        }
        try? await producer.flush(timeout: .seconds(10))
    }
}

/// Resumes `loop.labeled` partitions at the offsets stored with the examples.
struct StoredOffsets: RebalanceHandler {
    let store: TrainingStore
    let topic: String
    let readiness: Readiness
    let condition: String

    func assigned(_ partitions: [TopicPartition]) async -> [TopicPartition: Int64]? {
        readiness.satisfy(condition)
        guard let stored = try? store.nextOffsets(topic: topic) else { return nil }
        return stored.filter { partitions.contains($0.key) }
    }

    func revoked(_ partitions: [TopicPartition]) async {}
}

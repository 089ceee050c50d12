import Contracts
import Learning
import Foundation
import Kafka
import Logging
import ServiceKit
import ServiceLifecycle

/// The feedback service: joins predictions with outcomes into `loop.labeled`, watches quality and
/// drift per model version, raises alerts, takes review verdicts and serves a dashboard.
///
/// One consumer group reads `loop.predictions` and `loop.events` (co-partitioned by entity). Each
/// batch is applied to the SQLite join store in one transaction together with its input offsets and
/// the labeled examples it produced (the outbox); the examples are then sent and acknowledged
/// before the consumer's offsets are marked. On assignment the consumer seeks to the stored offsets.
/// The store keeps predictions as references to `loop.predictions`: on start, the outbox is
/// reconciled and the served records of predictions still waiting are read back from that topic.
public struct FeedbackService: LoopService, Service {
    public static let name = "feedback"
    public static let summary = "joins predictions with outcomes into loop.labeled and watches quality and drift"
    public static let defaultAdminPort = 8084

    // MARK: - Settings

    static let groupSetting = Setting.string(
        "group", default: "", valueName: "<group id>",
        help: "Consumer group of the feedback instances (they share the partitions); empty means `<topic prefix>.feedback`.")
    static let retentionSetting = Setting.integer(
        "late-retention-seconds", default: 432_000, range: 0...31_536_000, valueName: "<seconds>",
        help: "Event time a prediction is kept after its join deadline, so late outcomes are still emitted and duplicates recognised. After a restart the served records are read back from loop.predictions, whose retention should cover the deadline plus this (the default, 5 days, leaves room for a 2-hour deadline within a 7-day topic retention).")
    static let chunkSetting = Setting.integer(
        "estimation-chunk-seconds", default: 3600, range: 1...31_536_000, valueName: "<seconds>",
        help: "Event-time length of the chunks that label-free performance estimates (CBPE) are made for.")
    static let minimumSamplesSetting = Setting.integer(
        "alert-min-samples", default: 200, range: 1...1_000_000,
        help: "Windows with fewer events than this raise no drift or performance alert.")
    static let batchSetting = Setting.integer(
        "batch-size", default: 2000, range: 1...100_000, help: "Records per consumed batch (one SQLite transaction).")

    public static var settings: [any SettingDeclaration] {
        [groupSetting, retentionSetting, chunkSetting, minimumSamplesSetting, batchSetting]
    }

    /// Readiness conditions.
    static let assignedCondition = "feedback.assigned"
    static let modelsCondition = "feedback.models"

    // MARK: - Parts

    let config: LoopConfig
    let topics: Topics
    let kafka: KafkaConfig
    let logger: Logger
    let readiness: Readiness
    let groupID: String
    let batchSize: Int
    let store: JoinStore
    let monitor: Monitor
    let producer: KafkaProducer
    let publisher: LabeledPublisher
    let decoder: InputDecoder
    let metrics: FeedbackMetrics

    public init(environment: ServiceEnvironment) async throws {
        let settings = environment.settings
        config = environment.config
        topics = config.topics.names
        kafka = environment.kafka
        logger = environment.logger
        readiness = environment.readiness
        groupID = settings[Self.groupSetting].isEmpty ? "\(config.topics.prefix).feedback" : settings[Self.groupSetting]
        batchSize = settings[Self.batchSetting]
        let policy = try JoinPolicy(config: config, retentionSeconds: Double(settings[Self.retentionSetting]))
        if config.topics.retention.seconds * 1000 < Double(policy.deadlineMs + policy.retentionMs) {
            logger.warning("loop.predictions may delete records the join still needs after a restart", metadata: [
                "feedback.topic_retention_seconds": "\(config.topics.retention.seconds)",
                "feedback.deadline_plus_late_retention_seconds": "\((policy.deadlineMs + policy.retentionMs) / 1000)",
            ])
        }
        try FileManager.default.createDirectory(atPath: environment.stateDirectory, withIntermediateDirectories: true)
        store = try JoinStore(path: environment.stateDirectory + "/feedback.sqlite", policy: policy)
        monitor = try Monitor(
            settings: MonitorSettings(
                config: config, chunkSeconds: Double(settings[Self.chunkSetting]),
                minimumSamples: settings[Self.minimumSamplesSetting]),
            openAlerts: try store.openAlerts())
        producer = try KafkaProducer(config: kafka, logger: logger)
        publisher = LabeledPublisher(
            producer: producer, store: store, topic: topics.labeled, predictionsTopic: topics.predictions, kafka: kafka, logger: logger)
        decoder = InputDecoder(predictionsTopic: topics.predictions, policy: policy)
        metrics = FeedbackMetrics(registry: environment.metrics)
        metrics.update(counters: store.counters)

        let audit = AuditLog(producer: producer, topic: topics.audit, service: Self.name, logger: logger)
        var environment = environment
        environment.audit = audit.authFailureHook
        let reviews = ReviewDesk(
            store: store, producer: producer, audit: audit, eventsTopic: topics.events,
            threshold: config.decision.threshold, positiveLabel: config.label.positive)
        reviews.addRoutes(to: environment.router, requireRole: environment.requireRole(.reviewer))
        Dashboard(monitor: monitor, store: store, thresholds: config.drift).addRoute(to: environment.router)

        readiness.require(Self.assignedCondition)
        readiness.require(Self.modelsCondition)
    }

    // MARK: - Running

    public func run() async throws {
        try await TopicLayout(config: config).ensureTopics(kafka: kafka, logger: logger)
        try await publisher.recover()
        try await publisher.restoreWaiting()
        let consumer = try KafkaConsumer(config: kafka, groupID: groupID, logger: logger)
        try consumer.subscribe(
            topics: [topics.predictions, topics.events],
            rebalance: StoredOffsets(store: store, readiness: readiness, condition: Self.assignedCondition, logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.join(consumer) }
            group.addTask { try await Self.untilShutdown { try await self.followModels() } }
            group.addTask { try await Self.untilShutdown { try await self.publishSnapshots() } }
            group.addTask {
                try? await gracefulShutdown()
                await consumer.close()
            }
            try await group.waitForAll()
        }
        try await publishSnapshot()
    }

    /// Runs `body` until graceful shutdown cancels it; the cancellation is the normal end, not a failure.
    static func untilShutdown(_ body: @escaping @Sendable () async throws -> Void) async throws {
        do {
            try await cancelWhenGracefulShutdown(body)
        } catch is CancellationError {
            return
        }
    }

    /// Batches decoded, applied or waiting for their labeled examples' acknowledgements at once.
    static let maxBatchesInFlight = 4

    /// The join loop: the consumer's batches through ``JoinPipeline`` (decode, join and store,
    /// monitor and confirm on tasks of their own), their labeled examples to `loop.labeled`, their
    /// offsets marked once the examples are confirmed.
    func join(_ consumer: KafkaConsumer) async throws {
        let pipeline = JoinPipeline(decoder: decoder, store: store, monitor: monitor, batchesInFlight: Self.maxBatchesInFlight)
        try await pipeline.run(
            consumer.batches(maxRecords: batchSize, maxWait: .milliseconds(50)),
            output: ConsumedJoinOutput(publisher: publisher, consumer: consumer, metrics: metrics))
    }

    /// Follows `loop.models`: training baselines for drift, reference AUCs and promotions.
    func followModels() async throws {
        let reader = try PartitionReader(
            config: kafka, partitions: [TopicPartition(topic: topics.models, partition: 0)], logger: logger)
        for try await event in reader.events() {
            switch event {
            case .caughtUp:
                readiness.satisfy(Self.modelsCondition)
            case .records(let records):
                for record in records {
                    guard let key = record.key.map({ String(decoding: $0, as: UTF8.self) }), let value = record.value else { continue }
                    if key == RegistryState.key {
                        if let registry = try? RegistryState(bytes: value) { monitor.register(registry: registry) }
                    } else if key.hasPrefix("model.") {
                        if let model = try? ModelVersionRecord(bytes: value) { monitor.register(model: model) }
                    }
                }
            }
        }
    }

    /// Publishes a snapshot every `feedback.snapshotInterval`.
    func publishSnapshots() async throws {
        let interval = Duration.milliseconds(Int64(config.feedback.snapshotInterval.seconds * 1000))
        while !Task.isCancelled {
            try await Task.sleep(for: interval)
            do {
                try await publishSnapshot()
            } catch {
                logger.warning("monitoring snapshot not published", metadata: ["error.message": "\(error)"])
            }
        }
    }

    /// Takes a snapshot, sends its records and alert changes to `loop.monitoring`, and remembers the open alerts.
    func publishSnapshot() async throws {
        let reviewQueue = try store.reviewQueueSize()
        let snapshot = monitor.snapshot(counters: store.counters, reviewQueue: reviewQueue)
        metrics.update(snapshot: snapshot)
        metrics.update(reviewQueue: reviewQueue, agreement: snapshot.counters.reviewerAgreement)
        let records = snapshot.records.map { record in
            OutgoingRecord(topic: topics.monitoring, key: Array((record.modelVersion.map { "model.\($0)" } ?? "baseline").utf8),
                           value: record.bytes)
        } + snapshot.alertChanges.map { OutgoingRecord(topic: topics.monitoring, key: Array("alerts".utf8), value: $0.bytes) }
        _ = try await producer.send(records)
        if !snapshot.alertChanges.isEmpty { try store.saveOpenAlerts(snapshot.openAlerts) }
    }
}

/// The service's end of the join pipeline: labeled examples go to `loop.labeled`, counters to the
/// metrics, and confirmed batches are marked processed in the consumer.
struct ConsumedJoinOutput: JoinOutput {
    let publisher: LabeledPublisher
    let consumer: KafkaConsumer
    let metrics: FeedbackMetrics

    func send(_ outbox: [OutboxEntry]) async throws -> [DeliveryReport] { try await publisher.send(outbox) }

    func applied(_ result: JoinBatchResult) { metrics.update(counters: result.counters) }

    func processed(_ records: [ConsumedRecord]) { consumer.markProcessed(records) }

    func stop() async { await consumer.close() }
}

/// Seeks every assigned partition to the offset stored with the join state.
struct StoredOffsets: RebalanceHandler {
    let store: JoinStore
    let readiness: Readiness
    let condition: String
    let logger: Logger

    func assigned(_ partitions: [TopicPartition]) async -> [TopicPartition: Int64]? {
        defer { readiness.satisfy(condition) }
        do {
            return try store.storedOffsets(for: partitions)
        } catch {
            logger.error("stored offsets unreadable; resuming from the group's offsets", metadata: ["error.message": "\(error)"])
            return nil
        }
    }

    func revoked(_ partitions: [TopicPartition]) async {}
}

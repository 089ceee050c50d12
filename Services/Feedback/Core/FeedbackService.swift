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
public struct FeedbackService: LoopService, Service {
    public static let name = "feedback"
    public static let summary = "joins predictions with outcomes into loop.labeled and watches quality and drift"
    public static let defaultAdminPort = 8084

    // MARK: - Settings

    static let groupSetting = Setting.string(
        "group", default: "", valueName: "<group id>",
        help: "Consumer group of the feedback instances (they share the partitions); empty means `<topic prefix>.feedback`.")
    static let retentionSetting = Setting.integer(
        "late-retention-seconds", default: 604_800, range: 0...31_536_000, valueName: "<seconds>",
        help: "Event time a prediction is kept after its join deadline, so late outcomes are still emitted and duplicates recognised.")
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

    /// Batches whose labeled examples may be in flight to `loop.labeled` at once.
    static let maxBatchesInFlight = 4

    /// The join loop: decode and apply batch N+1 while batch N's labeled examples are being
    /// acknowledged. A second task confirms deliveries in the order the batches were applied
    /// (removing them from the outbox), then marks their inputs processed; at most
    /// ``maxBatchesInFlight`` batches wait for acknowledgements.
    func join(_ consumer: KafkaConsumer) async throws {
        struct InFlight: Sendable {
            var delivery: Task<[DeliveryReport], any Error>
            var outbox: [OutboxEntry]
            var batch: [ConsumedRecord]
        }
        let (deliveries, delivered) = AsyncStream.makeStream(of: InFlight.self)
        let (slots, freed) = AsyncStream.makeStream(of: Void.self)
        for _ in 0..<Self.maxBatchesInFlight { freed.yield() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { freed.finish() }
                do {
                    for await item in deliveries {
                        let reports = try await item.delivery.value
                        try store.confirmDelivered(item.outbox, reports: reports)
                        consumer.markProcessed(item.batch)
                        freed.yield()
                    }
                } catch {
                    // End the batches too, so the failure surfaces now rather than at the next batch.
                    await consumer.close()
                    throw error
                }
            }
            var slot = slots.makeAsyncIterator()
            do {
                for try await batch in consumer.batches(maxRecords: batchSize, maxWait: .milliseconds(50)) {
                    guard await slot.next() != nil else { break }
                    let result = try store.apply(decoder.decode(batch))
                    let outbox = result.outbox
                    let delivery = Task { try await publisher.send(outbox) }
                    delivered.yield(InFlight(delivery: delivery, outbox: outbox, batch: batch))
                    monitor.observe(predictions: result.predictions)
                    monitor.observe(labeled: result.labeled)
                    if let time = result.maxEventTimeMs { monitor.advance(to: time) }
                    metrics.update(counters: result.counters)
                }
            } catch {
                delivered.finish()
                throw error
            }
            delivered.finish()
            try await group.waitForAll()
        }
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

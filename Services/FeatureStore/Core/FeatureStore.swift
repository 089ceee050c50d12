import Contracts
import Features
import Kafka
import Logging
import Prometheus
import ServiceKit
import ServiceLifecycle
import Synchronization

/// The feature-store's data path: consumes `loop.events` in a consumer group, keeps per-entity
/// event-time features in per-partition SQLite state and publishes every change to
/// `loop.features`. Tests drive it directly; ``FeatureStoreService`` wires it into a process.
public final class FeatureStore: Sendable {
    /// The compiled feature definitions.
    public let schema: FeatureSchema
    /// Reads of the state this instance holds (the HTTP API).
    public let queries: FeatureQueries
    private let config: LoopConfig
    private let options: FeatureStoreOptions
    private let kafka: KafkaConfig
    private let logger: Logger
    private let metrics: FeatureStoreMetrics
    private let readiness: Readiness
    private let registry = StoreRegistry()
    private let consumer = Mutex<KafkaConsumer?>(nil)
    private let stopRequested = Mutex(false)

    /// Builds the store; nothing runs until ``run()``.
    /// - Throws: ``FeatureStoreError`` for bad options or feature definitions.
    public init(
        config: LoopConfig, options: FeatureStoreOptions, kafka: KafkaConfig, logger: Logger,
        metrics: PrometheusCollectorRegistry, readiness: Readiness
    ) throws(FeatureStoreError) {
        try options.validate()
        do {
            schema = try FeatureSchema(settings: config.features)
        } catch {
            throw FeatureStoreError(.invalidConfiguration, "feature definitions: \(error)")
        }
        self.config = config
        self.options = options
        self.kafka = kafka
        self.logger = logger
        self.metrics = FeatureStoreMetrics(registry: metrics)
        self.readiness = readiness
        queries = FeatureQueries(schema: schema, settings: config.features, registry: registry)
        readiness.require(FeatureProcessor.readyCondition)
    }

    /// Creates the topics if needed, joins the group and processes until ``stop()``; then leaves
    /// the group after the in-flight batch is committed and published.
    public func run() async throws {
        try await TopicLayout(config: config).ensureTopics(kafka: kafka, logger: logger)
        let producer = try KafkaProducer(config: kafka, logger: logger)
        var settings = ConsumerSettings()
        settings.sessionTimeout = options.sessionTimeout
        settings.heartbeatInterval = .milliseconds(max(100, options.sessionTimeout.components.seconds * 1000 / 6))
        let consumer = try KafkaConsumer(config: kafka, groupID: options.groupID, consumer: settings, logger: logger)
        let processor = FeatureProcessor(
            schema: schema, config: config, options: options, producer: producer, kafka: kafka, logger: logger,
            metrics: metrics, readiness: readiness, registry: registry,
            acknowledged: { records in consumer.markProcessed(records) })
        try consumer.subscribe(topics: [config.topics.names.events], rebalance: ProcessorRebalance(processor: processor))
        let stopped = self.consumer.withLock { current in
            current = consumer
            return stopRequested.withLock { $0 }
        }
        if stopped { await consumer.close() }
        do {
            for try await batch in consumer.batches(maxRecords: options.batchSize, maxWait: options.batchWait) {
                try await processor.process(batch)
            }
            try await processor.drain()
        } catch {
            logger.error("feature-store stopped after a failure", metadata: ["error.message": "\(error)"])
            await consumer.close()
            throw error
        }
        await consumer.close()
        try? await producer.flush(timeout: .seconds(5))
    }

    /// The input partitions this instance holds now, ascending.
    public var ownedPartitions: [Int32] { registry.all.map(\.partition) }

    /// Per held input partition, the input offset up to which every change is stored and
    /// acknowledged by `loop.features` (-1 before any).
    public func acknowledgedInput() throws -> [Int32: Int64] {
        var offsets: [Int32: Int64] = [:]
        for store in registry.all { offsets[store.partition] = try store.progress().ackedThrough }
        return offsets
    }

    /// Bytes on disk of the held partitions' SQLite files (state, history, WAL).
    public var stateBytesOnDisk: Int64 { registry.all.reduce(0) { $0 + $1.sizeOnDisk() } }

    /// Writes entity states straight into the SQLite state of input partition `partition` under
    /// `options.stateDirectory`, bypassing `loop.events` and `loop.features`: for benchmarks and
    /// tools that need a large store quickly. The states count as published (nothing is
    /// republished) and the partition's offsets are left alone, so an instance started afterwards
    /// serves them and applies events on top. Each state must belong to the partition its
    /// entity's events go to. Writes in transactions of up to 50,000 states.
    /// - Throws: ``FeatureStoreError`` `storage` when the state cannot be written.
    public static func seed(
        _ states: some Sequence<EntityFeatureState>, partition: Int32, options: FeatureStoreOptions
    ) throws(FeatureStoreError) {
        let store = try PartitionStore(directory: options.stateDirectory, partition: partition, historyInterval: options.historyInterval.seconds)
        var chunk: [EntityChange] = []
        chunk.reserveCapacity(50_000)
        for state in states {
            chunk.append(EntityChange(entity: state.entityID, bytes: state.encoded(), latestMillis: nil))
            if chunk.count == 50_000 {
                try store.seed(chunk)
                chunk.removeAll(keepingCapacity: true)
            }
        }
        if !chunk.isEmpty { try store.seed(chunk) }
    }

    /// Stops ``run()`` gracefully: the current batch finishes, partitions are flushed and the
    /// group is left.
    public func stop() async {
        let consumer = self.consumer.withLock { current in
            stopRequested.withLock { $0 = true }
            return current
        }
        await consumer?.close()
    }
}

/// The feature-store service: keeps per-entity event-time window features and publishes them to loop.features.
///
/// Ready once its first partitions are assigned and restored. Serves `GET /v1/features/{entity}`
/// (`?asOf=`) and `GET /v1/feature-definitions` on the admin port.
public struct FeatureStoreService: LoopService, Service {
    public static let name = "feature-store"
    public static let summary = "keeps per-entity event-time window features and publishes them to loop.features"
    public static let defaultAdminPort = 8082
    public static var settings: [any SettingDeclaration] { FeatureStoreSettings.all }
    /// Feature reads are point lookups of tens of microseconds, so the admin server runs them on
    /// its event loop: no hand-off to Swift's cooperative pool and back per request.
    public static let httpThreading = AdminServer.Threading.eventLoop

    /// The data path.
    public let store: FeatureStore

    public init(environment: ServiceEnvironment) throws {
        let settings = environment.settings
        let group = settings[FeatureStoreSettings.group]
        let options = FeatureStoreOptions(
            stateDirectory: environment.stateDirectory,
            groupID: group.isEmpty ? FeatureStoreOptions.defaultGroup(for: environment.config) : group,
            batchSize: settings[FeatureStoreSettings.batchSize],
            batchWait: .milliseconds(settings[FeatureStoreSettings.batchWaitMilliseconds]),
            historyInterval: TimeSpan(seconds: settings[FeatureStoreSettings.historyIntervalSeconds]),
            stateCacheEntities: settings[FeatureStoreSettings.stateCacheEntities],
            writeLanes: settings[FeatureStoreSettings.writeLanes])
        store = try FeatureStore(
            config: environment.config, options: options, kafka: environment.kafka, logger: environment.logger,
            metrics: environment.metrics, readiness: environment.readiness)
        store.queries.addRoutes(to: environment.router)
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await store.run()
        } onGracefulShutdown: { [store] in
            Task { await store.stop() }
        }
    }
}

import Contracts
import Foundation
import Kafka
import Logging
import ServiceKit
import TestSupport
@testable import Retrainer

/// A small deterministic random generator (SplitMix64).
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func normal() -> Double {
        let u = max(unit(), 1e-12)
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * unit())
    }
}

enum Fixture {
    static let hourMs: Int64 = 3_600_000
    static let startMs: Int64 = 1_700_000_000_000 / hourMs * hourMs

    /// A loop.yaml with two inputs (context fields x1, x2) and the given retraining section.
    static func config(prefix: String = "loop", retraining: String) throws -> LoopConfig {
        try LoopConfig.parse(yaml: """
            name: retrainer-test
            topics: { prefix: \(prefix), partitions: 1 }
            fields:
              x1: { type: double }
              x2: { type: double }
              label: { type: category, values: ["0", "1"] }
            label: { field: label, positive: "1" }
            model: { contextFields: [x1, x2] }
            retraining:
            \(retraining.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            """, file: "test.yaml")
    }

    /// `count` examples, one every `spacingMs` of event time from `startMs`; the label follows
    /// `weights · (x1, x2)` through a logistic link (flip the weights to get a drifted concept).
    static func examples(
        count: Int, from start: Int = 0, spacingMs: Int64 = 60_000, weights: (Double, Double) = (2, -1), seed: UInt64 = 7
    ) -> [LabeledExample] {
        var random = SeededRandom(seed: seed &+ UInt64(start))
        return (start..<(start + count)).map { i in
            let x1 = random.normal()
            let x2 = random.normal()
            let probability = 1 / (1 + exp(-(weights.0 * x1 + weights.1 * x2)))
            let label = random.unit() < probability
            let prediction = Prediction(
                requestId: "r-\(i)", entity: "e-\(i % 5)", eventTimeMs: startMs + Int64(i) * spacingMs, modelVersion: nil,
                role: .baseline, score: 0.5, decision: false, route: .auto,
                features: [FeatureValue(name: "x1", value: x1), FeatureValue(name: "x2", value: x2)])
            return LabeledExample(prediction: prediction, label: label, labelSource: .outcome, labelDelaySeconds: 60)
        }
    }

    static func records(_ examples: [LabeledExample], topic: String, firstOffset: Int64 = 0) -> [ConsumedRecord] {
        examples.enumerated().map { index, example in
            ConsumedRecord(topic: topic, partition: 0, offset: firstOffset + Int64(index), key: Array(example.entity.utf8), value: example.bytes)
        }
    }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "retrainer-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static let logger: Logger = {
        var logger = Logger(label: "retrainer-tests")
        logger.logLevel = .warning
        return logger
    }()
}

/// The retrainer's parts wired to a real broker, without a consumer group (tests feed records).
struct Harness {
    let config: LoopConfig
    let kafka: KafkaConfig
    let store: TrainingStore
    let registry: ModelRegistry
    let coordinator: RetrainingCoordinator
    let ingestor: LabeledIngestor
    let producer: KafkaProducer

    /// Parts over the store at `storePath`, with `loop.models` restored; topics are created.
    /// `observe` sees each step of every registry change (see ``ModelRegistry/Step``); with
    /// `restore: false` the registry is left empty (nothing is read, completed or repaired).
    static func make(
        config: LoopConfig, storePath: String, restore: Bool = true,
        observe: @escaping @Sendable (ModelRegistry.Step, RegistryBook.Change) async -> Void = { _, _ in }
    ) async throws -> Harness {
        let broker = try await Broker.shared()
        let kafka = KafkaConfig(brokers: broker.bootstrap, clientID: "retrainer-test")
        try await TopicLayout(config: config).ensureTopics(kafka: kafka, logger: Fixture.logger)
        let store = try TrainingStore(path: storePath)
        let producer = try KafkaProducer(config: kafka, logger: Fixture.logger)
        let topics = config.topics.names
        let audit = AuditLog(producer: producer, topic: topics.audit, service: "retrainer", logger: Fixture.logger)
        let registry = ModelRegistry(
            producer: producer, topics: topics, audit: audit, store: store, logger: Fixture.logger, observe: observe)
        if restore { try await registry.restore(kafka: kafka) }
        let coordinator = RetrainingCoordinator(config: config, store: store, registry: registry, logger: Fixture.logger)
        let ingestor = LabeledIngestor(
            store: store, coordinator: coordinator, triggers: StreamTriggers(policy: config.retraining),
            topic: topics.labeled, logger: Fixture.logger)
        return Harness(
            config: config, kafka: kafka, store: store, registry: registry, coordinator: coordinator, ingestor: ingestor,
            producer: producer)
    }

    /// Runs `body` while the coordinator works, then lets the coordinator finish (for good: once per harness).
    @discardableResult
    func working<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        let worker = Task { await coordinator.work() }
        do {
            let result = try await body()
            await coordinator.finish()
            await worker.value
            return result
        } catch {
            await coordinator.finish()
            await worker.value
            throw error
        }
    }

    /// Every record of `topic` (partition 0) from the beginning, as key and value.
    func readAll(_ topic: String) async throws -> [(key: String, value: [UInt8])] {
        try await consumeAll(topic).map { (String(decoding: $0.key ?? [], as: UTF8.self), $0.value ?? []) }
    }

    /// Every record of `topic` (partition 0) from the beginning, as consumed.
    func consumeAll(_ topic: String) async throws -> [ConsumedRecord] {
        let reader = try PartitionReader(config: kafka, partitions: [TopicPartition(topic: topic, partition: 0)], logger: Fixture.logger)
        var records: [ConsumedRecord] = []
        reading: for try await event in reader.events() {
            switch event {
            case .records(let batch):
                records += batch
            case .caughtUp:
                break reading
            }
        }
        await reader.close()
        return records
    }

    /// The registry as a fresh reader of `loop.models` sees it, before any repair.
    func readRegistry() async throws -> RegistryBook {
        var book = RegistryBook()
        for record in try await readAll(config.topics.names.models) { try book.read(key: record.key, value: record.value) }
        return book
    }

    /// The versions and the latest registry state on `loop.models`.
    func publishedRegistry() async throws -> (versions: [ModelVersionRecord], states: [RegistryState]) {
        var versions: [ModelVersionRecord] = []
        var states: [RegistryState] = []
        for record in try await readAll(config.topics.names.models) {
            if record.key == RegistryState.key {
                states.append(try RegistryState(bytes: record.value))
            } else {
                versions.append(try ModelVersionRecord(bytes: record.value))
            }
        }
        return (versions, states)
    }
}

/// Waits for `condition` to hold, polling until `timeout`; fails the wait with `what` otherwise.
func waitUntil(_ what: String, timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw WaitTimeout(description: "timed out waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

struct WaitTimeout: Error, CustomStringConvertible {
    var description: String
}

/// A latch a task waits on until another opens it (opening before the wait lets it pass).
actor Latch {
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func open() {
        isOpen = true
        for waiter in waiters { waiter.resume() }
        waiters = []
    }
}

/// A clock a test steps by hand: ``sleep()`` returns once per ``tick()``; a cancelled sleeper throws.
actor ManualTicker {
    private var ticks = 0
    private var sleeper: CheckedContinuation<Void, any Error>?
    /// How many sleeps have started.
    private(set) var sleeps = 0

    func sleep() async throws {
        sleeps += 1
        if ticks > 0 {
            ticks -= 1
            return
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { sleeper = $0 }
        } onCancel: {
            Task { await self.cancel() }
        }
    }

    func tick() {
        if let sleeper {
            self.sleeper = nil
            sleeper.resume()
        } else {
            ticks += 1
        }
    }

    private func cancel() {
        sleeper?.resume(throwing: CancellationError())
        sleeper = nil
    }
}

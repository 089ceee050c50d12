import Contracts
import Features
import Foundation
import Kafka
import Logging
import Prometheus
import ServiceKit
import Storage
import TestSupport
@testable import FeatureStore

let testLogger: Logger = {
    var logger = Logger(label: "feature-store-tests")
    logger.logLevel = .warning
    return logger
}()

struct Timeout: Error, CustomStringConvertible {
    var description: String
}

/// The package root, for `examples/elec2/loop.yaml`.
let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A temporary directory of its own.
func temporaryDirectory(_ name: String) -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The Elec2 `loop.yaml` under a topic prefix of its own, written to a file.
struct TestDeployment {
    let config: LoopConfig
    let yamlPath: String
    let prefix: String
    let broker: Broker

    static func make(_ name: String) async throws -> TestDeployment {
        let broker = try await Broker.shared()
        let prefix = broker.uniqueTopic(name).replacingOccurrences(of: "-", with: "_")
        let original = try String(contentsOf: packageRoot.appendingPathComponent("examples/elec2/loop.yaml"), encoding: .utf8)
        let yaml = original.replacingOccurrences(of: "prefix: loop ", with: "prefix: \(prefix) ")
        let path = temporaryDirectory("loop-yaml") + "/loop.yaml"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        let config = try LoopConfig.load(path: path)
        precondition(config.topics.prefix == prefix, "the test prefix did not replace the example's")
        try await TopicLayout(config: config).ensureTopics(kafka: KafkaConfig(brokers: broker.bootstrap), logger: testLogger)
        return TestDeployment(config: config, yamlPath: path, prefix: prefix, broker: broker)
    }

    var kafka: KafkaConfig { KafkaConfig(brokers: broker.bootstrap, clientID: "feature-store-tests") }
    var partitions: Int32 { Int32(config.topics.partitions) }

    func schema() throws -> FeatureSchema { try FeatureSchema(settings: config.features) }

    /// An in-process feature-store.
    func store(
        stateDirectory: String, group: String, batchSize: Int = 300, historyInterval: TimeSpan = TimeSpan(seconds: 3600),
        stateCacheEntities: Int = 50_000
    ) throws -> FeatureStore {
        try FeatureStore(
            config: config,
            options: FeatureStoreOptions(
                stateDirectory: stateDirectory, groupID: group, batchSize: batchSize, batchWait: .milliseconds(20),
                historyInterval: historyInterval, stateCacheEntities: stateCacheEntities),
            kafka: kafka, logger: testLogger, metrics: .init(), readiness: .init())
    }

    // MARK: Input

    /// Produces `events` to loop.events in Kafka binary mode, each to its entity's partition;
    /// returns their delivery reports in order.
    @discardableResult
    func produce(_ events: ArraySlice<GeneratedEvent>) async throws -> [DeliveryReport] {
        let producer = try KafkaProducer(config: kafka, logger: testLogger)
        let records = events.map { event in
            OutgoingRecord(
                topic: config.topics.names.events, key: Array(event.entity.utf8), value: event.data,
                headers: [
                    KafkaHeader(key: "ce_specversion", string: "1.0"),
                    KafkaHeader(key: "ce_id", string: event.id),
                    KafkaHeader(key: "ce_source", string: "tests"),
                    KafkaHeader(key: "ce_type", string: event.type),
                    KafkaHeader(key: "ce_subject", string: event.entity),
                    KafkaHeader(key: "ce_time", string: event.timeText),
                    KafkaHeader(key: "content-type", string: "application/json"),
                ],
                partition: event.partition)
        }
        return try await producer.send(Array(records))
    }

    // MARK: Output

    /// The latest loop.features record per entity, read from the beginning to the end.
    func changelog() async throws -> [String: [UInt8]] {
        let partitions = (0..<partitions).map { TopicPartition(topic: config.topics.names.features, partition: $0) }
        let reader = try PartitionReader(config: kafka, partitions: partitions, logger: testLogger)
        var latest: [String: [UInt8]] = [:]
        reading: for try await event in reader.events() {
            switch event {
            case .records(let records):
                for record in records {
                    if let key = record.key, let value = record.value { latest[String(decoding: key, as: UTF8.self)] = value }
                }
            case .caughtUp: break reading
            }
        }
        await reader.close()
        return latest
    }

    /// Waits until the changelog's latest record of every entity is `expected` (and no other entity appears).
    func waitForChangelog(_ expected: [String: [UInt8]], timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var last: [String: [UInt8]] = [:]
        while ContinuousClock.now < deadline {
            last = try await changelog()
            if last == expected { return }
            try await Task.sleep(for: .milliseconds(300))
        }
        let differing = expected.keys.filter { last[$0] != expected[$0] }.sorted()
        throw Timeout(description: "changelog never matched: \(differing.count) of \(expected.count) entities differ (\(differing.prefix(5))), \(last.count) published")
    }
}

/// Every entity's stored record in the SQLite files of a state directory.
func storedStates(in directory: String) throws -> [String: [UInt8]] {
    var states: [String: [UInt8]] = [:]
    for file in try FileManager.default.contentsOfDirectory(atPath: directory) where file.hasSuffix(".sqlite") {
        let database = try Database(path: directory + "/" + file)
        try database.withConnection { db in
            let statement = try db.statement("SELECT entity, state FROM entities")
            while try statement.step() {
                states[statement.string(at: 0) ?? ""] = statement.blob(at: 1) ?? []
            }
            statement.reset()
        }
    }
    return states
}

// MARK: - Generated input

/// One test event.
struct GeneratedEvent: Sendable {
    var id: String
    var entity: String
    var partition: Int32
    var type: String
    /// Event time in whole milliseconds.
    var millis: Int64
    var values: [String: Double]

    var timeText: String { Timestamp(seconds: millis / 1000, nanoseconds: Int32(millis % 1000) * 1_000_000).text }
    var data: [UInt8] {
        JSONValue.object(JSONObject(values.map { ($0.key, JSONValue.double($0.value)) })).canonicalBytes()
    }
    var featureEvent: FeatureEvent { FeatureEvent(time: Double(millis) / 1000, type: type, values: values) }
}

/// A deterministic stream: entities round-robin, time moving forward with jitter inside the
/// allowed lateness, a few events far behind (late), a few of a type no feature reads.
func generateEvents(entities: Int, perEntity: Int, partitions: Int32, seed: UInt64 = 42) -> [GeneratedEvent] {
    var random = SplitMix(seed: seed)
    let start: Int64 = 1_704_067_200_000
    var clocks = Array(repeating: start, count: entities)
    var events: [GeneratedEvent] = []
    for round in 0..<perEntity {
        for entity in 0..<entities {
            clocks[entity] += 60_000 + Int64(random.next() % 240_000)
            var millis = clocks[entity] - Int64(random.next() % 1_200_000)
            let roll = random.next() % 100
            if roll < 3 { millis = clocks[entity] - 3 * 3_600_000 }
            let type = roll < 6 ? "loop.outcome.v1" : roll < 20 ? "loop.score_request.v1" : "loop.observation.v1"
            let values: [String: Double] = [
                "nswprice": Double(random.next() % 10_000) / 10_000,
                "nswdemand": Double(random.next() % 10_000) / 10_000,
                "vicprice": Double(random.next() % 10_000) / 10_000,
                "transfer": Double(random.next() % 10_000) / 10_000,
            ]
            events.append(GeneratedEvent(
                id: "ev-\(round)-\(entity)", entity: "entity-\(entity)", partition: Int32(entity) % partitions, type: type,
                millis: millis, values: values))
        }
    }
    return events
}

/// The state of every entity after applying `events` in order, without interruption.
func referenceStates(_ events: ArraySlice<GeneratedEvent>, schema: FeatureSchema) throws -> [String: EntityFeatureState] {
    var states: [String: EntityFeatureState] = [:]
    for event in events where event.type != "loop.outcome.v1" {
        var state = states[event.entity] ?? EntityFeatureState(entityID: event.entity, schema: schema)
        if case .applied = try state.apply(event.featureEvent) { states[event.entity] = state }
    }
    return states
}

func encoded(_ states: [String: EntityFeatureState]) -> [String: [UInt8]] {
    states.mapValues { $0.encoded() }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Waits until `condition` holds, checking every 50 ms, for at most `timeout`.
func waitUntil(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

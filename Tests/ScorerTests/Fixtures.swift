import Contracts
import Features
import Foundation
import Kafka
import Learning
import Logging
import Scorer
import ServiceKit
import TestSupport

/// A small deterministic generator (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

enum Fixtures {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// examples/elec2/loop.yaml with its topic prefix and partition count replaced.
    static func config(prefix: String = "loop", partitions: Int = 2, edit: (inout LoopConfig) -> Void = { _ in }) throws -> LoopConfig {
        let path = packageRoot.appendingPathComponent("examples/elec2/loop.yaml").path
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: "prefix: loop ", with: "prefix: \(prefix) ")
        text = text.replacingOccurrences(of: "partitions: 4 ", with: "partitions: \(partitions) ")
        var config = try LoopConfig.parse(yaml: text, file: path)
        edit(&config)
        return config
    }

    static let logger: Logger = {
        var logger = Logger(label: "scorer-tests")
        logger.logLevel = .warning
        return logger
    }()

    /// A time on a bucket edge of every window of elec2 (a multiple of 12 600 s).
    static let t0: Double = 1_699_992_000

    /// An entity whose features are defined as of `t0`: observations every 20 minutes over the 2
    /// hours before, with prices around `level`.
    static func featureState(_ entity: String, schema: Features.FeatureSchema, level: Double = 0.5, latest: Double = t0) throws -> EntityFeatureState {
        var state = EntityFeatureState(entityID: entity, schema: schema)
        for step in 0..<6 {
            let time = latest - Double(5 - step) * 1200
            let wiggle = Double(step % 3) * 0.02
            _ = try state.apply(FeatureEvent(time: time, type: "loop.observation.v1", values: [
                "nswprice": level + wiggle, "nswdemand": 0.4 + wiggle, "vicprice": 0.3 + wiggle, "transfer": 0.5,
            ]))
        }
        return state
    }

    /// Context fields in range.
    static func context(requestId: String, nswprice: Double = 0.5) -> JSONObject {
        JSONObject([
            ("requestId", .string(requestId)), ("period", .double(0.5)), ("nswprice", .double(nswprice)),
            ("nswdemand", .double(0.4)), ("vicprice", .double(0.3)), ("vicdemand", .double(0.4)), ("transfer", .double(0.5)),
        ])
    }

    /// A logistic regression over the layout's inputs, fitted on uniform(0, 1) inputs; with
    /// `informative` the label depends on `nswprice` and `nswprice_mean_2h`, else it is a coin flip.
    static func artifact(layout: RequestVectorLayout, seed: UInt64, informative: Bool = true) throws -> ModelArtifact {
        var generator = SeededGenerator(seed: seed)
        let n = 1_000
        var columns = [[Double]](repeating: [], count: layout.count)
        var labels: [Bool] = []
        let price = layout.names.firstIndex(of: "nswprice")!
        let mean2h = layout.names.firstIndex(of: "nswprice_mean_2h")!
        for _ in 0..<n {
            for j in 0..<layout.count { columns[j].append(generator.uniform()) }
            let row = columns.map { $0.last! }
            let logit = informative ? 4 * (row[price] - 0.5) + 2 * (row[mean2h] - 0.5) : 0
            labels.append(generator.uniform() < 1 / (1 + exp(-logit)))
        }
        let data = Dataset(columns: zip(layout.names, columns).map { .numeric($0, $1) }, labels: labels)
        return try LogisticRegression.fit(data)
    }

    static func serving(version: Int64, layout: RequestVectorLayout, seed: UInt64, informative: Bool = true) throws -> ServingModel {
        try ServingModel(version: version, artifact: artifact(layout: layout, seed: seed, informative: informative), layout: layout)
    }

    static func versionRecord(_ version: Int64, artifact: ModelArtifact, status: ModelStatus) throws -> ModelVersionRecord {
        ModelVersionRecord(
            version: version, status: status, parent: nil, trigger: "manual", createdAtMs: 0, reasons: [],
            lineage: .object([:]), artifact: try JSONValue.parse(Array(artifact.jsonData())), card: "")
    }

    // MARK: - Kafka

    static func kafka(_ broker: Broker) -> KafkaConfig { KafkaConfig(brokers: broker.bootstrap, clientID: "scorer-tests") }

    /// A score-request event in Kafka binary mode, keyed by entity.
    static func requestRecord(topic: String, entity: String, requestId: String, timeMs: Int64, nswprice: Double = 0.5) -> OutgoingRecord {
        let event = CloudEvent(
            id: "evt-\(requestId)-\(UUID().uuidString.prefix(6))", source: "tests", type: "loop.score_request.v1",
            subject: entity, time: Timestamp(seconds: timeMs / 1000, nanoseconds: Int32(timeMs % 1000) * 1_000_000),
            dataContentType: "application/json",
            extensions: ["traceparent": .string("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
            data: .json(.object(context(requestId: requestId, nswprice: nswprice))))
        let message = KafkaBinding.encode(event, mode: .binary, key: .subject)
        return OutgoingRecord(
            topic: topic, key: message.key, value: message.value,
            headers: message.headers.map { KafkaHeader(key: $0.name, value: $0.value) })
    }

    /// Publishes a model version and the registry state naming it.
    static func publish(
        _ records: [ModelVersionRecord], state: RegistryState, topic: String, producer: KafkaProducer
    ) async throws {
        var outgoing = records.map {
            OutgoingRecord(topic: topic, key: Array(ModelVersionRecord.key(version: $0.version).utf8), value: $0.bytes, partition: 0)
        }
        outgoing.append(OutgoingRecord(topic: topic, key: Array(RegistryState.key.utf8), value: state.bytes, partition: 0))
        _ = try await producer.send(outgoing)
    }

    /// Every prediction on `topic` (all partitions) once the reader caught up.
    static func predictions(topic: String, partitions: Int, kafka: KafkaConfig) async throws -> [(partition: Int32, prediction: Prediction)] {
        let reader = try PartitionReader(
            config: kafka, partitions: (0..<Int32(partitions)).map { TopicPartition(topic: topic, partition: $0) }, logger: logger)
        var result: [(Int32, Prediction)] = []
        for try await event in reader.events() {
            switch event {
            case .records(let records):
                for record in records { result.append((record.partition, try Prediction(bytes: record.value ?? []))) }
            case .caughtUp:
                await reader.close()
                return result
            }
        }
        return result
    }

    /// Waits until `condition` holds, for at most `timeout`.
    static func waitUntil(_ what: String, timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw TestFailure(description: "timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
}

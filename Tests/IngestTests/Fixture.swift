#if canImport(Glibc)
import Glibc
#endif
import Contracts
import Foundation
import Ingest
import Kafka
import Logging
import Prometheus
import ServiceKit
import ServiceLifecycle
import Synchronization
import TestSupport

/// The package root, for `examples/elec2/loop.yaml`.
let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Log lines collected from a service under test.
final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    func logger() -> Logger {
        Logger(label: "ingest") { label in
            JSONLogHandler(label: label, level: .debug, sink: LogSink { [self] line in append(line) })
        }
    }
}

/// One isolated deployment on the shared broker: a unique topic prefix, consumer group and state
/// directory, and `loop.yaml` from the elec2 example.
struct Deployment {
    let broker: Broker
    let prefix: String
    let group: String
    let stateDirectory: String
    let configPath: String
    let config: LoopConfig
    var names: Topics { config.topics.names }
    var kafka: KafkaConfig { KafkaConfig(brokers: broker.bootstrap, clientID: "ingest-tests") }
    static let piiKey = "test-pii-key"

    /// A deployment on `broker`, or on the shared one.
    init(unknownFields: String = "reject", broker: Broker? = nil) async throws {
        if let broker {
            self.broker = broker
        } else {
            self.broker = try await Broker.shared()
        }
        prefix = Broker.uniqueTopic("it")
        group = Broker.uniqueTopic("ingest")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(Broker.uniqueTopic("ingest-state")).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        stateDirectory = directory
        var yaml = try String(contentsOf: packageRoot.appendingPathComponent("examples/elec2/loop.yaml"), encoding: .utf8)
        yaml = yaml.replacingOccurrences(of: "prefix: loop ", with: "prefix: \(prefix) ")
        yaml = yaml.replacingOccurrences(of: "unknownFields: reject", with: "unknownFields: \(unknownFields)")
        configPath = directory + "/loop.yaml"
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        config = try LoopConfig.parse(yaml: yaml, file: configPath)
    }

    /// An environment for an in-process service.
    func environment(logger: Logger, arguments: [String] = [], apiKeys: APIKeys = APIKeys()) throws -> ServiceEnvironment {
        let common = CommonSettings(service: IngestService.name, defaultAdminPort: 0)
        let all = ["--brokers", broker.bootstrap, "--state-dir", stateDirectory, "--group", group,
                   "--pii-key", Self.piiKey, "--config", configPath] + arguments
        guard case .run(let settings) = try Settings.parse(common.all + IngestService.settings, arguments: all, environment: [:]) else {
            throw TestFailure("settings did not parse")
        }
        return ServiceEnvironment(
            name: IngestService.name, settings: settings, common: common, config: config, logger: logger, apiKeys: apiKeys)
    }

    /// Produces raw records and waits for their acknowledgement.
    func produceRaw(_ records: [OutgoingRecord]) async throws {
        let producer = try KafkaProducer(config: kafka, logger: Logger(label: "test-producer"))
        _ = try await producer.send(records)
    }

    /// Every record of `topic` (all partitions), read up to the end.
    func readAll(_ topic: String) async throws -> [ConsumedRecord] {
        let admin = try KafkaAdmin(config: kafka, logger: Logger(label: "test-admin"))
        let partitions = try await admin.describeTopics([topic]).flatMap { description in
            description.partitions.map { TopicPartition(topic: topic, partition: $0.id) }
        }
        let reader = try PartitionReader(config: kafka, partitions: partitions, logger: Logger(label: "test-reader"))
        var records: [ConsumedRecord] = []
        reading: for try await event in reader.events(maxRecords: 10_000, maxWait: .milliseconds(20)) {
            switch event {
            case .records(let batch): records.append(contentsOf: batch)
            case .caughtUp: break reading
            }
        }
        await reader.close()
        return records
    }

    /// Reads `topic` until it holds at least `count` records or `timeout` passes.
    func waitForRecords(_ topic: String, count: Int, timeout: Duration = .seconds(30)) async throws -> [ConsumedRecord] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let records = try await readAll(topic)
            if records.count >= count || ContinuousClock.now >= deadline { return records }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// The number of records in `topic`, from the partitions' high watermarks.
    func recordCount(_ topic: String, admin: KafkaAdmin) async throws -> Int64 {
        var total: Int64 = 0
        for partition in 0..<Int32(config.topics.partitions) {
            total += try await admin.watermarks(topic: topic, partition: partition).high
        }
        return total
    }
}

/// A service running in-process inside a `ServiceGroup`, stopped gracefully by ``stop()``.
struct RunningService {
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let environment: ServiceEnvironment
    let admin: AdminServer?

    static func start(_ environment: ServiceEnvironment, http: Bool = false) async throws -> RunningService {
        let service = try await IngestService(environment: environment)
        let admin = http ? AdminServer(router: environment.router, host: "127.0.0.1", port: 0, logger: environment.logger) : nil
        let services: [any Service] = (admin.map { [$0] } ?? []) + [service]
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, logger: environment.logger))
        let task = Task { try await group.run() }
        let running = RunningService(group: group, task: task, environment: environment, admin: admin)
        let deadline = ContinuousClock.now + .seconds(30)
        while !environment.readiness.isReady {
            guard ContinuousClock.now < deadline else { throw TestFailure("ingest did not become ready") }
            try await Task.sleep(for: .milliseconds(20))
        }
        return running
    }

    var port: Int {
        get async throws {
            guard let port = await admin?.boundPort() else { throw TestFailure("no HTTP server") }
            return port
        }
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }

    /// Starts a graceful shutdown without waiting for it: for a service whose broker is gone, where
    /// closing the consumer group can take the session timeout.
    func abandon() async {
        await group.triggerGracefulShutdown()
    }

    /// The Prometheus text of the service's metrics.
    var metricsText: String { String(decoding: environment.metrics.emitToBuffer(), as: UTF8.self) }

    /// The value of one sample line (`name{labels}`), or 0 when absent.
    func metric(_ sample: String) -> Double {
        for line in metricsText.split(separator: "\n") where line.hasPrefix(sample + " ") {
            return Double(line.dropFirst(sample.count + 1)) ?? 0
        }
        return 0
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Raw events

/// A valid observation's data for entity `subject`.
func observationData(operator name: String = "alice@example.com", nswprice: JSONValue = 0.5) -> JSONObject {
    ["dow": 3, "period": 0.25, "nswprice": nswprice, "nswdemand": 0.4, "operator": .string(name)]
}

/// A raw binary-mode record.
func binaryRecord(
    topic: String, id: String, source: String = "/tests", type: String = "loop.observation.v1", subject: String? = "NSW",
    time: String? = "2024-05-01T10:00:00Z", data: JSONObject, extraHeaders: [KafkaHeader] = []
) -> OutgoingRecord {
    var headers = [KafkaHeader(key: "ce_specversion", string: "1.0"), KafkaHeader(key: "ce_id", string: id),
                   KafkaHeader(key: "ce_source", string: source), KafkaHeader(key: "ce_type", string: type),
                   KafkaHeader(key: "content-type", string: "application/json")]
    if let subject { headers.append(KafkaHeader(key: "ce_subject", string: subject)) }
    if let time { headers.append(KafkaHeader(key: "ce_time", string: time)) }
    headers.append(contentsOf: extraHeaders)
    return OutgoingRecord(topic: topic, key: subject.map { Array($0.utf8) }, value: JSONValue.object(data).canonicalBytes(), headers: headers)
}

/// A raw structured-mode record.
func structuredRecord(topic: String, event: CloudEvent) -> OutgoingRecord {
    let message = KafkaBinding.encode(event, mode: .structured, key: .subject)
    return OutgoingRecord(topic: topic, key: message.key, value: message.value,
                          headers: message.headers.map { KafkaHeader(key: $0.name, value: $0.value) })
}

extension ConsumedRecord {
    func text(_ header: String) -> String? { self.header(header)?.value.map { String(decoding: $0, as: UTF8.self) } }
    var valueText: String { String(decoding: value ?? [], as: UTF8.self) }
    var allText: String { valueText + headers.map { "\($0.key)=\(String(decoding: $0.value ?? [], as: UTF8.self))" }.joined() }
}

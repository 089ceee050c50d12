import Contracts
import Foundation
import Kafka
import Logging
import ServiceKit
import TestSupport

/// The whole loop for one test: the shared Tansu broker and the five built service executables as
/// separate processes, each with its own state directory, admin port and log file, all on a topic
/// prefix no other test uses, configured by a loop.yaml derived from examples/elec2/loop.yaml.
struct LoopStack: Sendable {
    /// The services in the order they start.
    static let serviceNames = ["feature-store", "scorer", "feedback", "retrainer", "ingest"]

    /// Settings of single services beyond the common ones. On a loaded 2-core CI machine the
    /// feature-store can trail the scorer by more than the default 2 s feature wait, and requests
    /// are then scored on missing or stale features (whose examples the retrainer cannot use), so
    /// the scorer waits longer here.
    static let serviceArguments = ["scorer": ["--scorer-feature-wait-ms", "30000"]]

    /// A started service.
    struct Service: Sendable {
        let name: String
        let process: ChildProcess
        let adminPort: Int
        var url: String { "http://127.0.0.1:\(adminPort)" }
    }

    let broker: Broker
    let prefix: String
    let topics: Topics
    /// Holds loop.yaml, every service's state directory and the logs.
    let directory: URL
    let configPath: String
    /// An API key with every role, whose hash the services were given.
    let apiKey: String
    let services: [Service]

    var kafka: KafkaConfig { KafkaConfig(brokers: broker.bootstrap, clientID: "e2e-test") }

    func service(_ name: String) -> Service { services.first { $0.name == name }! }

    // MARK: - Lifecycle

    /// Starts the broker (shared) and the five services, and waits until every one is ready.
    /// `adjust` edits the test loop.yaml (see ``testConfig(prefix:adjust:)``).
    static func start(_ label: String, adjust: [(String, String)]) async throws -> LoopStack {
        let broker = try await Broker.shared()
        let prefix = Broker.uniqueTopic("e2e-\(label)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(prefix)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let configPath = directory.appendingPathComponent("loop.yaml").path
        try testConfig(prefix: prefix, adjust: adjust).write(toFile: configPath, atomically: true, encoding: .utf8)

        let apiKey = Digest.hex((0..<32).map { _ in UInt8.random(in: 0...255) })
        let environment = [
            "LOOP_API_KEYS": "e2e producer,reviewer,operator,viewer sha256:\(Digest.hex(Digest.sha256(apiKey)))",
            "LOOP_PII_KEY": Digest.hex((0..<32).map { _ in UInt8.random(in: 0...255) }),
        ]
        var services: [Service] = []
        do {
            for name in serviceNames {
                let port = try Broker.freePort()
                let process = try ChildProcess.launch(
                    name, arguments: [
                        "--config", configPath, "--brokers", broker.bootstrap,
                        "--state-dir", directory.appendingPathComponent("state/\(name)").path,
                        "--admin-host", "127.0.0.1", "--admin-port", String(port), "--log-format", "json",
                    ] + serviceArguments[name, default: []],
                    environment: environment, logDirectory: directory.appendingPathComponent("logs"))
                services.append(Service(name: name, process: process, adminPort: port))
            }
            for service in services {
                try await service.process.waitUntilReady(port: service.adminPort, timeout: .seconds(60))
            }
        } catch {
            for service in services { service.process.kill() }
            throw error
        }
        return LoopStack(
            broker: broker, prefix: prefix, topics: Topics(prefix: prefix), directory: directory,
            configPath: configPath, apiKey: apiKey, services: services)
    }

    /// Stops every service with SIGTERM (SIGKILL after a grace period), in reverse start order;
    /// returns how each ended.
    @discardableResult
    func stop() async -> [String: ChildProcess.Termination] {
        var result: [String: ChildProcess.Termination] = [:]
        for service in services.reversed() {
            result[service.name] = await service.process.stop(grace: .seconds(15))
        }
        return result
    }

    /// The last lines of every service's log, for failure messages.
    func logTails(lines: Int = 25) -> String {
        services.map { service in
            "----- \(service.name) (\(service.process.termination.map(\.description) ?? "running"), \(service.process.logFile.path)) -----\n"
                + service.process.logTail(lines: lines)
        }.joined(separator: "\n")
    }

    // MARK: - Configuration

    /// The repository's root, from this file's path.
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// examples/elec2/loop.yaml with the topic prefix replaced and each `(line, replacement)` of
    /// `adjust` applied; every line must occur exactly once, so a change to the example that makes an
    /// adjustment silently miss fails the test instead.
    static func testConfig(prefix: String, adjust: [(String, String)]) throws -> String {
        var text = try String(
            contentsOf: repositoryRoot.appendingPathComponent("examples/elec2/loop.yaml"), encoding: .utf8)
        for (line, replacement) in [("  prefix: loop ", "  prefix: \(prefix) ")] + adjust {
            let occurrences = text.components(separatedBy: line).count - 1
            guard occurrences == 1 else {
                throw ChildProcess.Failure(description: "examples/elec2/loop.yaml has `\(line)` \(occurrences) times, expected once")
            }
            text = text.replacingOccurrences(of: line, with: replacement)
        }
        return text
    }

    // MARK: - loopctl

    /// The environment that points `loopctl` at this stack.
    var loopctlEnvironment: [String: String] {
        var environment = ["LOOP_BROKERS": broker.bootstrap, "LOOP_CONFIG": configPath, "LOOP_API_KEY": apiKey]
        for service in services {
            environment["LOOP_\(service.name.uppercased().replacingOccurrences(of: "-", with: "_"))_URL"] = service.url
        }
        return environment
    }

    /// Runs the built `loopctl` with `arguments` against this stack.
    func loopctl(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> ChildProcess.Output {
        try await ChildProcess.run("loopctl", arguments: arguments, environment: loopctlEnvironment, timeout: timeout)
    }

    // MARK: - Reading topics

    /// Every record of `topic` from the beginning to its end now, read without a consumer group
    /// (independently of loopctl and of the services).
    func records(_ topic: String) async throws -> [ConsumedRecord] {
        let logger = Logger(label: "e2e") { _ in SwiftLogNoOpLogHandler() }
        let admin = try KafkaAdmin(config: kafka, logger: logger)
        let descriptions = try await admin.describeTopics([topic])
        guard let description = descriptions.first, !description.partitions.isEmpty else { return [] }
        let reader = try PartitionReader(
            config: kafka, partitions: description.partitions.map { TopicPartition(topic: topic, partition: $0.id) },
            logger: logger)
        var records: [ConsumedRecord] = []
        for try await event in reader.events(maxRecords: 5000, maxWait: .milliseconds(50)) {
            switch event {
            case .records(let batch): records.append(contentsOf: batch)
            case .caughtUp:
                await reader.close()
                return records
            }
        }
        await reader.close()
        return records
    }

    /// The decoded records of `topic` (those whose key `isKey` accepts) as one `TopicRecord` type;
    /// fails on one that does not decode.
    func decoded<Record: TopicRecord>(
        _ type: Record.Type, from topic: String, where isKey: (String) -> Bool = { _ in true }
    ) async throws -> [Record] {
        try await records(topic).compactMap { record in
            guard isKey(record.key.map { String(decoding: $0, as: UTF8.self) } ?? "") else { return nil }
            return try record.value.map { try Record(bytes: $0) }
        }
    }

    /// The model versions on loop.models.
    func modelVersions() async throws -> [ModelVersionRecord] {
        try await decoded(ModelVersionRecord.self, from: topics.models) { $0.hasPrefix("model.") }
    }

    /// The registry states on loop.models, oldest first.
    func registryStates() async throws -> [RegistryState] {
        try await decoded(RegistryState.self, from: topics.models) { $0 == RegistryState.key }
    }
}

/// Runs `body` against a fresh ``LoopStack`` and always stops the stack afterwards, also when
/// `body` throws (then the services' log tails are printed with the error).
func withLoopStack(
    _ label: String, adjust: [(String, String)], _ body: (LoopStack) async throws -> Void
) async throws {
    let stack = try await LoopStack.start(label, adjust: adjust)
    do {
        try await body(stack)
    } catch {
        print("end-to-end test failed: \(error)\nlogs under \(stack.directory.path)\n\(stack.logTails())")
        await stack.stop()
        throw error
    }
    await stack.stop()
}

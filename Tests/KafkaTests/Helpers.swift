import Kafka
import Logging
import TestSupport

enum TestError: Error, CustomStringConvertible {
    case timedOut(String)
    var description: String {
        switch self { case .timedOut(let what): "timed out: \(what)" }
    }
}

let testLogger: Logger = {
    var logger = Logger(label: "kafka-tests")
    logger.logLevel = .warning
    return logger
}()

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
func text(_ bytes: [UInt8]?) -> String? { bytes.map { String(decoding: $0, as: UTF8.self) } }

/// Test-friendly consumer settings: fast group join and small batches.
func quickConsumerSettings(strategy: String = "cooperative-sticky") -> ConsumerSettings {
    var settings = ConsumerSettings()
    settings.sessionTimeout = .seconds(6)
    settings.autoCommitInterval = .milliseconds(500)
    settings.assignmentStrategy = strategy
    return settings
}

/// Creates a topic on the shared broker and returns its name.
func makeTopic(_ broker: Broker, _ prefix: String, partitions: Int32) async throws -> String {
    let topic = broker.uniqueTopic(prefix)
    let admin = try KafkaAdmin(config: KafkaConfig(brokers: broker.bootstrap), logger: testLogger)
    try await admin.createTopics([TopicSpec(name: topic, partitions: partitions)])
    return topic
}

/// Runs `body` with a deadline; throws ``TestError/timedOut`` when it passes.
func withDeadline<T: Sendable>(
    _ duration: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: duration)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TestError.timedOut(what) }
        return value
    }
}

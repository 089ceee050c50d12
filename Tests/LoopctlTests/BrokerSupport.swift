import Kafka
import Logging
import TestSupport

/// Shared plumbing of the broker tests.
enum TestKafka {
    static let logger = Logger(label: "loopctl-test") { _ in SwiftLogNoOpLogHandler() }

    /// The shared broker's client settings.
    static func config() async throws -> KafkaConfig {
        KafkaConfig(brokers: try await Broker.shared().bootstrap, clientID: "loopctl-test")
    }

    /// Creates `names` with `partitions` partitions each.
    static func createTopics(_ names: [String], partitions: Int32 = 1) async throws {
        let admin = try KafkaAdmin(config: try await config(), logger: logger)
        try await admin.createTopics(names.map { TopicSpec(name: $0, partitions: partitions) })
    }
}

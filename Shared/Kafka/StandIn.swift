// Stand-in for the Kafka module's public API so ServiceKit builds in its own worktree.
// The lead deletes this file when the Kafka branch merges.
import CRdKafka

/// Connection settings for librdkafka clients.
public struct KafkaConfig: Sendable {
    public var brokers: String
    public var clientID: String
    public var securityProtocol: String?
    public var saslMechanism: String?
    public var saslUsername: String?
    public var saslPassword: String?
    public var tlsCALocation: String?
    public var tlsCertificateLocation: String?
    public var tlsKeyLocation: String?
    public var extra: [String: String] = [:]

    public init(brokers: String, clientID: String = "feedbackloop") {
        self.brokers = brokers
        self.clientID = clientID
    }
}

/// The librdkafka linked at run time.
public enum Librdkafka {
    public struct VersionError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Fails when the librdkafka loaded at run time is older than 2.2.
    public static func checkVersion() throws {
        let (number, text) = runtimeVersion
        if number < 0x0202_00FF {
            throw VersionError(description: "librdkafka \(text) is older than 2.2.0")
        }
    }

    /// The loaded librdkafka's version as a number (`0xMMmmrrxx`) and as text.
    public static var runtimeVersion: (Int, String) {
        (Int(rd_kafka_version()), String(cString: rd_kafka_version_str()))
    }
}

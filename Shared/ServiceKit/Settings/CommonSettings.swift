import Kafka
import Logging

/// The format of log lines on standard output.
public enum LogFormat: String, Sendable, CaseIterable {
    /// One JSON object per line (`ts`, `level`, `label`, `message`, metadata with dotted keys).
    case json
    /// Human-readable lines for a terminal.
    case text
}

/// The settings every FeedbackLoop service reads, with the service's own admin port and state
/// directory defaults.
public struct CommonSettings: Sendable {
    public let config = Setting.string(
        "config", default: "loop.yaml", valueName: "<path>",
        help: "Path of loop.yaml, the domain configuration every service reads.")
    public let brokers = Setting.string(
        "brokers", default: "127.0.0.1:9092", valueName: "<host:port,...>",
        help: "Kafka bootstrap brokers, comma-separated.")
    public let adminHost = Setting.string(
        "admin-host", default: "0.0.0.0", valueName: "<address>",
        help: "Address the admin HTTP server (/healthz, /readyz, /metrics and the service's API) listens on.")
    public let adminPort: Setting<Int>
    public let stateDirectory: Setting<String>
    public let logFormat = Setting.choice(
        "log-format", default: LogFormat.json, help: "Log lines as JSON objects or as human-readable text.")
    public let logLevel = Setting.choice(
        "log-level", default: Logger.Level.info, help: "The least severe level that is logged.")
    public let shutdownTimeout = Setting.integer(
        "shutdown-timeout", default: 30, range: 1...3600, valueName: "<seconds>",
        help: "How long graceful shutdown may take before the remaining work is cancelled.")

    // MARK: Kafka security pass-through

    public let kafkaSecurityProtocol = Setting.optionalChoice(
        "kafka-security-protocol", choices: ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"],
        help: "librdkafka security.protocol.")
    public let kafkaSASLMechanism = Setting.optionalString(
        "kafka-sasl-mechanism", valueName: "<mechanism>",
        help: "librdkafka sasl.mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER).")
    public let kafkaSASLUsername = Setting.optionalString(
        "kafka-sasl-username", help: "librdkafka sasl.username.")
    public let kafkaSASLPassword = Setting.optionalString(
        "kafka-sasl-password", help: "librdkafka sasl.password.", secret: true)
    public let kafkaTLSCA = Setting.optionalString(
        "kafka-tls-ca", valueName: "<path>", help: "librdkafka ssl.ca.location: CA certificate (PEM) to verify brokers.")
    public let kafkaTLSCertificate = Setting.optionalString(
        "kafka-tls-cert", valueName: "<path>", help: "librdkafka ssl.certificate.location: client certificate (PEM).")
    public let kafkaTLSKey = Setting.optionalString(
        "kafka-tls-key", valueName: "<path>", help: "librdkafka ssl.key.location: client private key (PEM).")
    public let kafkaExtra = Setting.keyValues(
        "kafka-extra",
        help: "Any other librdkafka properties, e.g. socket.timeout.ms=30000,debug=broker.\nValues may hold secrets, so they are never logged.",
        secret: true)

    // MARK: API keys

    public let apiKeysFile = Setting.optionalString(
        "api-keys-file", valueName: "<path>",
        help: "File of API key hashes, one `<name> <role>[,<role>...] sha256:<hex>` per line (see APIKeys).")
    public let apiKeys = Setting.optionalString(
        "api-keys", valueName: "<lines>",
        help: "API key hash lines inline, separated by `;` (added to those of the keys file).", secret: true)

    /// The common settings of the service `service` (`ingest`, …), whose admin server listens on
    /// `defaultAdminPort` unless told otherwise.
    public init(service: String, defaultAdminPort: Int) {
        adminPort = .port("admin-port", default: defaultAdminPort,
                          help: "Port of the admin HTTP server; 0 picks a free port (logged at start).")
        stateDirectory = .string("state-dir", default: "state/" + service, valueName: "<path>",
                                 help: "Directory for the service's local state (embedded stores, checkpoints).")
    }

    /// Every common setting, in the order `--help` lists them.
    public var all: [any SettingDeclaration] {
        [config, brokers, adminHost, adminPort, stateDirectory, logFormat, logLevel, shutdownTimeout,
         kafkaSecurityProtocol, kafkaSASLMechanism, kafkaSASLUsername, kafkaSASLPassword,
         kafkaTLSCA, kafkaTLSCertificate, kafkaTLSKey, kafkaExtra, apiKeysFile, apiKeys]
    }

    /// The Kafka client settings these settings describe, for the client `clientID`.
    public func kafkaConfig(from settings: Settings, clientID: String) -> KafkaConfig {
        var config = KafkaConfig(brokers: settings[brokers], clientID: clientID)
        config.securityProtocol = settings[kafkaSecurityProtocol]
        config.saslMechanism = settings[kafkaSASLMechanism]
        config.saslUsername = settings[kafkaSASLUsername]
        config.saslPassword = settings[kafkaSASLPassword]
        config.tlsCALocation = settings[kafkaTLSCA]
        config.tlsCertificateLocation = settings[kafkaTLSCertificate]
        config.tlsKeyLocation = settings[kafkaTLSKey]
        config.extra = settings[kafkaExtra]
        return config
    }
}

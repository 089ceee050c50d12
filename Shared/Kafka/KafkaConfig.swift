/// Connection settings shared by producers, consumers, readers and the admin client: the common
/// settings as typed fields, anything else librdkafka knows as ``extra`` key/values.
///
/// Validated once when a client is created; librdkafka itself rejects unknown keys in ``extra``
/// with ``KafkaError/Code/invalidConfiguration``.
public struct KafkaConfig: Sendable {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    public var brokers: String
    /// `client.id`.
    public var clientID: String
    /// `security.protocol`: `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    public var securityProtocol: String?
    /// `sasl.mechanism`, e.g. `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    public var saslMechanism: String?
    /// `sasl.username`.
    public var saslUsername: String?
    /// `sasl.password`.
    public var saslPassword: String?
    /// `ssl.ca.location`.
    public var tlsCALocation: String?
    /// `ssl.certificate.location`.
    public var tlsCertificateLocation: String?
    /// `ssl.key.location`.
    public var tlsKeyLocation: String?
    /// Any other librdkafka property, passed through unchanged. A key that a typed field also sets
    /// is an error unless both agree.
    public var extra: [String: String]

    /// Creates a configuration for the given bootstrap servers.
    public init(brokers: String, clientID: String = "feedbackloop") {
        self.brokers = brokers
        self.clientID = clientID
        self.extra = [:]
    }

    static let securityProtocols: Set<String> = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]

    /// The librdkafka properties these settings stand for, after validation.
    func properties() throws(KafkaError) -> [String: String] {
        let brokerList = brokers.trimmingWhitespace()
        guard !brokerList.isEmpty else {
            throw KafkaError(.invalidConfiguration, "brokers (bootstrap.servers) is empty")
        }
        var typed: [String: String] = ["bootstrap.servers": brokerList, "client.id": clientID]
        if let securityProtocol {
            let lowered = securityProtocol.lowercased()
            guard Self.securityProtocols.contains(lowered) else {
                throw KafkaError(
                    .invalidConfiguration,
                    "securityProtocol '\(securityProtocol)' is not one of plaintext, ssl, sasl_plaintext, sasl_ssl")
            }
            typed["security.protocol"] = lowered
        }
        if let saslMechanism {
            typed["sasl.mechanism"] = saslMechanism
            let needsCredentials = saslMechanism.uppercased() == "PLAIN" || saslMechanism.uppercased().hasPrefix("SCRAM")
            if needsCredentials && (saslUsername == nil || saslPassword == nil) {
                throw KafkaError(.invalidConfiguration, "saslMechanism \(saslMechanism) needs saslUsername and saslPassword")
            }
        }
        typed["sasl.username"] = saslUsername
        typed["sasl.password"] = saslPassword
        typed["ssl.ca.location"] = tlsCALocation
        typed["ssl.certificate.location"] = tlsCertificateLocation
        typed["ssl.key.location"] = tlsKeyLocation

        var merged = extra
        for (key, value) in typed {
            if let other = extra[key], other != value {
                throw KafkaError(
                    .invalidConfiguration,
                    "extra['\(key)'] = '\(other)' conflicts with the typed setting '\(value)'")
            }
            merged[key] = value
        }
        return merged
    }
}

/// What a producer does when its local queue (``ProducerSettings/maxQueuedMessages``) is full.
public enum QueueFullBehavior: Sendable, Hashable {
    /// `send` suspends until deliveries free space (back-pressure).
    case wait
    /// `send` throws ``KafkaError/Code/queueFull`` for the records that did not fit.
    case fail
}

/// Producer settings with safe defaults: idempotence on, a bounded local queue.
public struct ProducerSettings: Sendable {
    /// `enable.idempotence` (implies `acks=all`); on by default.
    public var idempotent: Bool = true
    /// `queue.buffering.max.messages`: records in flight (queued or awaiting acknowledgement).
    public var maxQueuedMessages: Int = 100_000
    /// `queue.buffering.max.kbytes`: bytes in flight, in KiB.
    public var maxQueuedKilobytes: Int = 256 * 1024
    /// `linger.ms`: how long to wait to fill a batch.
    public var linger: Duration = .milliseconds(5)
    /// `delivery.timeout.ms`: when an unacknowledged record fails with ``KafkaError/Code/timedOut``.
    public var deliveryTimeout: Duration = .seconds(120)
    /// `compression.type` (`none`, `gzip`, `snappy`, `lz4`, `zstd`), or `nil` for librdkafka's default.
    public var compression: String?
    /// What `send` does when the local queue is full.
    public var whenQueueFull: QueueFullBehavior = .wait

    /// Creates settings with the defaults.
    public init() {}

    func properties() throws(KafkaError) -> [String: String] {
        guard maxQueuedMessages > 0, maxQueuedKilobytes > 0 else {
            throw KafkaError(.invalidConfiguration, "maxQueuedMessages and maxQueuedKilobytes must be positive")
        }
        guard deliveryTimeout > .zero else {
            throw KafkaError(.invalidConfiguration, "deliveryTimeout must be positive")
        }
        var properties = [
            "enable.idempotence": idempotent ? "true" : "false",
            "queue.buffering.max.messages": String(maxQueuedMessages),
            "queue.buffering.max.kbytes": String(maxQueuedKilobytes),
            "linger.ms": String(linger.milliseconds),
            "delivery.timeout.ms": String(deliveryTimeout.milliseconds),
        ]
        if idempotent { properties["acks"] = "all" }
        if let compression { properties["compression.type"] = compression }
        return properties
    }
}

/// Where a consumer group starts on a partition without a committed offset (`auto.offset.reset`).
public enum StartPosition: String, Sendable, Hashable {
    /// The oldest retained record.
    case earliest
    /// Only records produced after joining.
    case latest
}

/// Consumer-group settings. Offsets are stored only for records marked processed
/// (`enable.auto.offset.store=false`) and committed every ``autoCommitInterval`` and on close.
public struct ConsumerSettings: Sendable {
    /// `session.timeout.ms`. A first join takes about half of it on Tansu, so keep it small.
    public var sessionTimeout: Duration = .seconds(6)
    /// `heartbeat.interval.ms`.
    public var heartbeatInterval: Duration = .seconds(1)
    /// `max.poll.interval.ms`: the longest a batch may take to process before the consumer is
    /// considered dead and its partitions are reassigned.
    public var maxPollInterval: Duration = .seconds(300)
    /// `auto.commit.interval.ms`: how often stored offsets are committed.
    public var autoCommitInterval: Duration = .seconds(5)
    /// `auto.offset.reset`.
    public var startPosition: StartPosition = .earliest
    /// `partition.assignment.strategy`. `cooperative-sticky` moves only the partitions that change
    /// owner; `range` or `roundrobin` revoke everything on every rebalance. Both are handled.
    public var assignmentStrategy: String = "cooperative-sticky"
    /// How many fetched batches wait for the caller before fetching pauses (back-pressure).
    public var bufferedBatches: Int = 4

    /// Creates settings with the defaults.
    public init() {}

    func properties(groupID: String) throws(KafkaError) -> [String: String] {
        guard !groupID.isEmpty else { throw KafkaError(.invalidConfiguration, "groupID is empty") }
        guard bufferedBatches > 0 else { throw KafkaError(.invalidConfiguration, "bufferedBatches must be positive") }
        guard sessionTimeout > .zero, autoCommitInterval > .zero, maxPollInterval > .zero else {
            throw KafkaError(.invalidConfiguration, "sessionTimeout, autoCommitInterval and maxPollInterval must be positive")
        }
        return [
            "group.id": groupID,
            "session.timeout.ms": String(sessionTimeout.milliseconds),
            "heartbeat.interval.ms": String(heartbeatInterval.milliseconds),
            "max.poll.interval.ms": String(maxPollInterval.milliseconds),
            "enable.auto.commit": "true",
            "auto.commit.interval.ms": String(autoCommitInterval.milliseconds),
            "enable.auto.offset.store": "false",
            "auto.offset.reset": startPosition.rawValue,
            "partition.assignment.strategy": assignmentStrategy,
        ]
    }
}

// MARK: - Helpers

extension Duration {
    /// Whole milliseconds, rounded down, clamped to `Int32` (librdkafka's timeout type).
    var milliseconds: Int {
        let (seconds, attoseconds) = components
        let total = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return Int(max(0, min(total, Int64(Int32.max))))
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}

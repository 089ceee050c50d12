/// The one error type of the Kafka module: a code to match on, a human reason, and whether trying
/// again can help.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public enum Code: String, Sendable, Hashable {
        /// A setting is missing, malformed or rejected by librdkafka.
        case invalidConfiguration
        /// The librdkafka library loaded at run time is too old or does not match the headers.
        case unsupportedLibrdkafka
        /// The producer's local queue is full and the producer is set to fail instead of waiting.
        case queueFull
        /// An operation did not finish in time (includes messages not delivered within the delivery timeout).
        case timedOut
        /// No broker could be reached.
        case brokerUnavailable
        /// One or more records of a batch were not delivered; see ``KafkaError/failures``.
        case deliveryFailed
        /// librdkafka raised a fatal error; the client can no longer be used.
        case fatal
        /// The client was closed.
        case closed
        /// A consumer's batches are already being iterated elsewhere.
        case alreadyConsuming
        /// The topic or partition does not exist.
        case unknownTopicOrPartition
        /// The record was rejected as invalid (for example too large).
        case invalidRecord
        /// Any other librdkafka or broker error; ``KafkaError/reason`` names it.
        case librdkafka
    }

    /// The failure of one record of a batch send.
    public struct RecordFailure: Sendable {
        /// Position of the record in the batch passed to `send(_:)`.
        public var index: Int
        /// Why the record was not delivered.
        public var error: KafkaError
    }

    /// What kind of failure this is.
    public var code: Code
    /// A human-readable explanation.
    public var reason: String
    /// Whether retrying the same operation later can succeed.
    public var isRetriable: Bool
    /// Whether the client is unusable after this error (librdkafka fatal error).
    public var isFatal: Bool
    /// The librdkafka `rd_kafka_resp_err_t` value, when the error came from librdkafka.
    public var librdkafkaCode: Int32?
    /// For ``Code/deliveryFailed``: every record that failed, with its own error.
    public var failures: [RecordFailure]
    /// For ``Code/deliveryFailed``: the reports of the records of the batch that were delivered,
    /// indexed like the batch (`nil` where the record failed).
    public var deliveredReports: [DeliveryReport?]

    /// Creates an error.
    public init(
        _ code: Code, _ reason: String, isRetriable: Bool = false, isFatal: Bool = false,
        librdkafkaCode: Int32? = nil
    ) {
        self.code = code
        self.reason = reason
        self.isRetriable = isRetriable
        self.isFatal = isFatal
        self.librdkafkaCode = librdkafkaCode
        self.failures = []
        self.deliveredReports = []
    }

    /// Alias of ``reason``.
    public var message: String { reason }

    public var description: String {
        var text = "KafkaError.\(code.rawValue): \(reason)"
        if isFatal { text += " (fatal)" } else if isRetriable { text += " (retriable)" }
        return text
    }
}

import CRdKafka

extension KafkaError {
    /// Maps a librdkafka response code to a ``KafkaError``; `detail` is prefixed to librdkafka's text.
    init(_ err: rd_kafka_resp_err_t, _ detail: String, brokerHint: String? = nil) {
        let name = String(cString: rd_kafka_err2name(err))
        let text = String(cString: rd_kafka_err2str(err))
        var reason = "\(detail): \(text) (\(name))"
        if let brokerHint { reason += "; last broker error: \(brokerHint)" }
        self.init(
            Self.code(for: err), reason, isRetriable: Self.retriable.contains(err.rawValue),
            isFatal: err == RD_KAFKA_RESP_ERR__FATAL, librdkafkaCode: err.rawValue)
    }

    /// Wraps and destroys an `rd_kafka_error_t`.
    init(consuming error: OpaquePointer, _ detail: String) {
        let err = rd_kafka_error_code(error)
        let message = String(cString: rd_kafka_error_string(error))
        self.init(
            Self.code(for: err), "\(detail): \(message) (\(String(cString: rd_kafka_err2name(err))))",
            isRetriable: rd_kafka_error_is_retriable(error) != 0, isFatal: rd_kafka_error_is_fatal(error) != 0,
            librdkafkaCode: err.rawValue)
        rd_kafka_error_destroy(error)
    }

    private static func code(for err: rd_kafka_resp_err_t) -> Code {
        switch err {
        case RD_KAFKA_RESP_ERR__QUEUE_FULL: .queueFull
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
             RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
            .timedOut
        case RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__RESOLVE:
            .brokerUnavailable
        case RD_KAFKA_RESP_ERR__FATAL: .fatal
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION,
             RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
            .unknownTopicOrPartition
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_INVALID_MSG, RD_KAFKA_RESP_ERR_INVALID_RECORD,
             RD_KAFKA_RESP_ERR__BAD_MSG:
            .invalidRecord
        case RD_KAFKA_RESP_ERR__INVALID_ARG: .invalidConfiguration
        case RD_KAFKA_RESP_ERR__DESTROY: .closed
        default: .librdkafka
        }
    }

    private static let retriable: Set<Int32> = [rd_kafka_resp_err_t](arrayLiteral:
        RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR__TIMED_OUT,
        RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE, RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
        RD_KAFKA_RESP_ERR__RESOLVE, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND, RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
        RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
    ).reduce(into: Set<Int32>()) { set, err in set.insert(err.rawValue) }
}

import CRdKafka
import Logging
import Synchronization

/// The kind of librdkafka handle.
enum ClientKind {
    case producer
    case consumer
}

/// Receives a consumer's rebalance events; implemented by ``ConsumerEngine``.
protocol RebalanceTarget: AnyObject {
    func rebalance(_ err: rd_kafka_resp_err_t, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>)
}

/// The Swift side of librdkafka's callbacks for one handle. It is the handle's opaque (held by an
/// `Unmanaged` reference for as long as the handle lives); the C callbacks only hand data to it.
final class ClientCallbacks: @unchecked Sendable {
    let logger: Logger
    private let fatal = Mutex<KafkaError?>(nil)
    private let lastBrokerErrorText = Mutex<String?>(nil)
    /// Set once, before the consumer first polls; read only on the polling thread.
    weak var rebalanceTarget: (any RebalanceTarget)?

    init(logger: Logger) { self.logger = logger }

    /// The fatal error librdkafka raised, if any; the client cannot be used after one.
    var fatalError: KafkaError? { fatal.withLock { $0 } }
    /// The last broker connection error seen, to make timeouts explain themselves.
    var lastBrokerError: String? { lastBrokerErrorText.withLock { $0 } }

    fileprivate func error(_ rk: OpaquePointer?, _ code: Int32, _ reason: String) {
        let err = rd_kafka_resp_err_t(rawValue: code)
        if err == RD_KAFKA_RESP_ERR__FATAL, let rk {
            var buffer = [CChar](repeating: 0, count: 512)
            let original = rd_kafka_fatal_error(rk, &buffer, buffer.count)
            let detail = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            var error = KafkaError(original, "librdkafka fatal error")
            error.code = .fatal
            error.isFatal = true
            error.isRetriable = false
            error.reason = "librdkafka fatal error: \(detail.isEmpty ? reason : detail)"
            fatal.withLock { if $0 == nil { $0 = error } }
            logger.error("\(error.reason)", metadata: ["kafka.error": "\(String(cString: rd_kafka_err2name(original)))"])
            return
        }
        if err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
            || err == RD_KAFKA_RESP_ERR__RESOLVE || err == RD_KAFKA_RESP_ERR__AUTHENTICATION
            || err == RD_KAFKA_RESP_ERR__SSL
        {
            lastBrokerErrorText.withLock { $0 = reason }
        }
        logger.warning("librdkafka: \(reason)", metadata: ["kafka.error": "\(String(cString: rd_kafka_err2name(err)))"])
    }

    fileprivate func log(_ level: Int32, _ facility: String, _ message: String) {
        let metadata: Logger.Metadata = ["kafka.facility": "\(facility)"]
        switch level {
        case ...3: logger.error("librdkafka: \(message)", metadata: metadata)
        case 4: logger.warning("librdkafka: \(message)", metadata: metadata)
        case 5, 6: logger.info("librdkafka: \(message)", metadata: metadata)
        default: logger.debug("librdkafka: \(message)", metadata: metadata)
        }
    }
}

/// Owns one `rd_kafka_t` and its callback context; destroying it destroys the handle.
final class ClientHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    let callbacks: ClientCallbacks
    private let retainedCallbacks: Unmanaged<ClientCallbacks>

    /// Creates a handle. `configure` may install more callbacks on the configuration.
    init(
        kind: ClientKind, properties: [String: String], logger: Logger,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(KafkaError) {
        try Librdkafka.checkVersion()
        let conf = rd_kafka_conf_new()!
        var errorText = [CChar](repeating: 0, count: 512)
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            if rd_kafka_conf_set(conf, key, value, &errorText, errorText.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw KafkaError(.invalidConfiguration, "\(key): \(Self.string(errorText))")
            }
        }
        let callbacks = ClientCallbacks(logger: logger)
        let retained = Unmanaged.passRetained(callbacks)
        rd_kafka_conf_set_opaque(conf, retained.toOpaque())
        rd_kafka_conf_set_error_cb(conf) { rk, code, reason, opaque in
            guard let opaque else { return }
            let text = reason.map { String(cString: $0) } ?? ""
            Unmanaged<ClientCallbacks>.fromOpaque(opaque).takeUnretainedValue().error(rk, code, text)
        }
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, message in
            guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
            Unmanaged<ClientCallbacks>.fromOpaque(opaque).takeUnretainedValue().log(
                level, facility.map { String(cString: $0) } ?? "", message.map { String(cString: $0) } ?? "")
        }
        configure(conf)
        let type = kind == .producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER
        guard let rk = rd_kafka_new(type, conf, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(conf)
            retained.release()
            throw KafkaError(.invalidConfiguration, "cannot create the Kafka client: \(Self.string(errorText))")
        }
        self.pointer = rk
        self.callbacks = callbacks
        self.retainedCallbacks = retained
    }

    deinit {
        rd_kafka_destroy(pointer)
        retainedCallbacks.release()
    }

    /// The error to report for a failed operation: the fatal error if there was one, else `error`
    /// with the last broker connection problem appended for timeouts and transport failures.
    func explain(_ error: KafkaError) -> KafkaError {
        if let fatal = callbacks.fatalError { return fatal }
        guard error.code == .timedOut || error.code == .brokerUnavailable, let hint = callbacks.lastBrokerError,
            !error.reason.contains(hint)
        else { return error }
        var explained = error
        explained.reason += "; last broker error: \(hint)"
        return explained
    }

    static func string(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

// MARK: - Topic-partition lists

extension Array where Element == TopicPartition {
    /// Builds a librdkafka list; the caller destroys it with `rd_kafka_topic_partition_list_destroy`.
    func makeList(offsets: [TopicPartition: Int64] = [:]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        let list = rd_kafka_topic_partition_list_new(Int32(count))!
        for tp in self {
            let element = rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition)!
            if let offset = offsets[tp] { element.pointee.offset = offset }
        }
        return list
    }
}

extension UnsafeMutablePointer where Pointee == rd_kafka_topic_partition_list_t {
    /// The elements of a librdkafka list as Swift values with their offsets and errors.
    var entries: [(partition: TopicPartition, offset: Int64, error: rd_kafka_resp_err_t)] {
        (0..<Int(pointee.cnt)).map { index in
            let element = pointee.elems[index]
            return (TopicPartition(topic: String(cString: element.topic), partition: element.partition),
                    element.offset, element.err)
        }
    }
}

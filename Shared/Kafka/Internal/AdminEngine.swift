import CRdKafka
import Logging

/// Admin operations over a producer-type handle; every call blocks a Dispatch thread, not the
/// cooperative pool.
final class AdminEngine: @unchecked Sendable {
    let handle: ClientHandle
    let timeout: Duration
    private let properties: [String: String]
    private let logger: Logger

    init(properties: [String: String], timeout: Duration, logger: Logger) throws(KafkaError) {
        self.handle = try ClientHandle(kind: .producer, properties: properties, logger: logger)
        self.timeout = timeout
        self.properties = properties
        self.logger = logger
    }

    /// Creates topics; "already exists" counts as success. Returns the names that were created now.
    func createTopics(_ specs: [TopicSpec]) async throws(KafkaError) -> [String] {
        let handle = handle
        let milliseconds = Int32(timeout.milliseconds)
        return try await Blocking.run { () -> Result<[String], KafkaError> in
            let rk = handle.pointer
            var errorText = [CChar](repeating: 0, count: 512)
            var newTopics: [OpaquePointer?] = []
            defer { for topic in newTopics { rd_kafka_NewTopic_destroy(topic) } }
            for spec in specs {
                guard let topic = rd_kafka_NewTopic_new(
                    spec.name, spec.partitions, Int32(spec.replicationFactor), &errorText, errorText.count)
                else {
                    return .failure(KafkaError(.invalidConfiguration, "topic \(spec.name): \(ClientHandle.string(errorText))"))
                }
                newTopics.append(topic)
                for (key, value) in spec.config.sorted(by: { $0.key < $1.key }) {
                    let err = rd_kafka_NewTopic_set_config(topic, key, value)
                    if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                        return .failure(KafkaError(err, "topic \(spec.name) config \(key)"))
                    }
                }
            }
            let options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS)
            defer { rd_kafka_AdminOptions_destroy(options) }
            rd_kafka_AdminOptions_set_request_timeout(options, milliseconds, &errorText, errorText.count)
            rd_kafka_AdminOptions_set_operation_timeout(options, milliseconds, &errorText, errorText.count)
            let queue = rd_kafka_queue_new(rk)
            defer { rd_kafka_queue_destroy(queue) }
            newTopics.withUnsafeMutableBufferPointer { buffer in
                rd_kafka_CreateTopics(rk, buffer.baseAddress, buffer.count, options, queue)
            }
            guard let event = rd_kafka_queue_poll(queue, milliseconds + 1000) else {
                return .failure(handle.explain(KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, "create topics")))
            }
            defer { rd_kafka_event_destroy(event) }
            let eventError = rd_kafka_event_error(event)
            if eventError != RD_KAFKA_RESP_ERR_NO_ERROR {
                let text = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? ""
                return .failure(handle.explain(KafkaError(eventError, "create topics: \(text)")))
            }
            var count = 0
            guard let result = rd_kafka_event_CreateTopics_result(event),
                let results = rd_kafka_CreateTopics_result_topics(result, &count)
            else { return .failure(KafkaError(.librdkafka, "create topics: no result")) }
            var created: [String] = []
            for index in 0..<count {
                let topicResult = results[index]
                let name = String(cString: rd_kafka_topic_result_name(topicResult))
                let err = rd_kafka_topic_result_error(topicResult)
                if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    created.append(name)
                } else if err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
                    let text = rd_kafka_topic_result_error_string(topicResult).map { String(cString: $0) } ?? ""
                    return .failure(KafkaError(err, "create topic \(name): \(text)"))
                }
            }
            return .success(created)
        }.get()
    }

    /// Cluster metadata for the named topics (all topics are requested, so nothing is auto-created).
    func describe(_ names: [String]) async throws(KafkaError) -> [TopicDescription] {
        let handle = handle
        let milliseconds = Int32(timeout.milliseconds)
        return try await Blocking.run { () -> Result<[TopicDescription], KafkaError> in
            var metadata: UnsafePointer<rd_kafka_metadata>?
            let err = rd_kafka_metadata(handle.pointer, 1, nil, &metadata, milliseconds)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
                return .failure(handle.explain(KafkaError(err, "fetch metadata")))
            }
            defer { rd_kafka_metadata_destroy(metadata) }
            var found: [String: TopicDescription] = [:]
            for index in 0..<Int(metadata.pointee.topic_cnt) {
                let topic = metadata.pointee.topics[index]
                let name = String(cString: topic.topic)
                guard names.contains(name), topic.err == RD_KAFKA_RESP_ERR_NO_ERROR else { continue }
                let partitions = (0..<Int(topic.partition_cnt)).map { partitionIndex in
                    let partition = topic.partitions[partitionIndex]
                    return PartitionDescription(
                        id: partition.id, leader: partition.leader,
                        replicas: (0..<Int(partition.replica_cnt)).map { partition.replicas[$0] })
                }
                found[name] = TopicDescription(name: name, partitions: partitions.sorted { $0.id < $1.id })
            }
            if let missing = names.first(where: { found[$0] == nil }) {
                return .failure(KafkaError(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "describe topic \(missing)"))
            }
            return .success(names.compactMap { found[$0] })
        }.get()
    }

    /// Low and high watermarks. The high watermark from ListOffsets is then confirmed by reading
    /// from just before it to the end of the partition: Tansu (0.6) answers ListOffsets "latest" with
    /// the base offset of the last record batch plus one, which is too low when that batch holds more
    /// than one record. On Kafka the confirmation reads at most one record per partition.
    func watermarks(_ partitions: [TopicPartition]) async throws(KafkaError) -> [TopicPartition: (low: Int64, high: Int64)] {
        var reported: [TopicPartition: (low: Int64, high: Int64)] = [:]
        for partition in partitions {
            reported[partition] = try await Self.listOffsets(handle, partition, timeout: timeout)
        }
        let nonEmpty = reported.filter { $0.value.high > $0.value.low }
        guard !nonEmpty.isEmpty else { return reported }
        var properties = properties
        properties["group.id"] = "watermarks-\(UInt64.random(in: 0...UInt64.max))"
        properties["enable.auto.commit"] = "false"
        properties["enable.partition.eof"] = "true"
        properties["fetch.max.bytes"] = "1048576"
        let reader = try ConsumerEngine(properties: properties, isGroupMember: false, logger: logger)
        let starts = nonEmpty.mapValues { $0.high - 1 }
        let timeout = timeout
        let ends = try await Blocking.run { reader.readToEnd(from: starts, timeout: timeout) }.get()
        for (partition, end) in ends where end > reported[partition]!.high { reported[partition]!.high = end }
        return reported
    }

    static func listOffsets(
        _ handle: ClientHandle, _ partition: TopicPartition, timeout: Duration
    ) async throws(KafkaError) -> (low: Int64, high: Int64) {
        let milliseconds = Int32(timeout.milliseconds)
        return try await Blocking.run { () -> Result<(low: Int64, high: Int64), KafkaError> in
            var low: Int64 = -1
            var high: Int64 = -1
            let err = rd_kafka_query_watermark_offsets(
                handle.pointer, partition.topic, partition.partition, &low, &high, milliseconds)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                return .failure(handle.explain(KafkaError(err, "watermarks of \(partition)")))
            }
            return .success((low, high))
        }.get()
    }
}

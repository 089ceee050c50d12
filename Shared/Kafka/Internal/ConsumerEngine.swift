import CRdKafka
import Dispatch
import Foundation
import Logging
import Synchronization

/// A librdkafka consumer driven by one dedicated thread: it fetches batches with
/// `rd_kafka_consume_batch_queue` (which also serves rebalance and error callbacks), hands them to
/// Swift, and at the end does the final commit and `rd_kafka_consumer_close`.
final class ConsumerEngine: RebalanceTarget, @unchecked Sendable {
    /// What the polling thread hands over: fetched records and partitions that reached their end
    /// (`enable.partition.eof`). Returns `false` to stop.
    typealias Deliver = @Sendable ([ConsumedRecord], [TopicPartition]) -> Bool

    private enum Phase { case idle, running, closing, closed }
    private struct State {
        var phase = Phase.idle
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let handle: ClientHandle
    private let queue: OpaquePointer
    private let isGroupMember: Bool
    private let logger: Logger
    private let state = Mutex(State())
    /// Set before polling starts; used only on the polling thread.
    var rebalanceHandler: (any RebalanceHandler)?
    /// Called on the polling thread when partitions are revoked, before they are given up.
    var onRevoke: @Sendable (Set<TopicPartition>) -> Void = { _ in }
    /// Called on the polling thread when the consumer stops, with the error that stopped it.
    var onStop: @Sendable (KafkaError?) -> Void = { _ in }

    init(properties: [String: String], isGroupMember: Bool, logger: Logger) throws(KafkaError) {
        self.handle = try ClientHandle(kind: .consumer, properties: properties, logger: logger) { conf in
            guard isGroupMember else { return }
            rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
                guard let rk, let partitions else { return }
                if let opaque,
                    let target = Unmanaged<ClientCallbacks>.fromOpaque(opaque).takeUnretainedValue().rebalanceTarget
                {
                    target.rebalance(err, partitions)
                } else {
                    ConsumerEngine.apply(err, partitions, rk: rk)
                }
            }
        }
        rd_kafka_poll_set_consumer(handle.pointer)
        self.queue = rd_kafka_queue_get_consumer(handle.pointer)
        self.isGroupMember = isGroupMember
        self.logger = logger
        handle.callbacks.rebalanceTarget = self
    }

    deinit { rd_kafka_queue_destroy(queue) }

    // MARK: - Subscription and assignment

    func subscribe(_ topics: [String]) throws(KafkaError) {
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics { rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA) }
        let err = rd_kafka_subscribe(handle.pointer, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, "subscribe to \(topics)") }
    }

    /// Assigns partitions directly (no group), starting at the given offsets.
    func assign(_ offsets: [TopicPartition: Int64]) throws(KafkaError) {
        let list = Array(offsets.keys).makeList(offsets: offsets)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_assign(handle.pointer, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, "assign \(offsets.keys.sorted { $0.description < $1.description })") }
    }

    /// Adds partitions to the direct assignment (no group), each starting at its given offset; the
    /// partitions already assigned keep their positions.
    func addAssignment(_ offsets: [TopicPartition: Int64]) throws(KafkaError) {
        let list = Array(offsets.keys).makeList(offsets: offsets)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        if let error = rd_kafka_incremental_assign(handle.pointer, list) {
            throw KafkaError(consuming: error, "add \(offsets.keys.sorted { $0.description < $1.description }) to the assignment")
        }
    }

    /// Removes partitions from the direct assignment (no group).
    func removeAssignment(_ partitions: [TopicPartition]) throws(KafkaError) {
        let list = partitions.makeList()
        defer { rd_kafka_topic_partition_list_destroy(list) }
        if let error = rd_kafka_incremental_unassign(handle.pointer, list) {
            throw KafkaError(consuming: error, "remove \(partitions) from the assignment")
        }
    }

    func rebalance(_ err: rd_kafka_resp_err_t, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) {
        let rk = handle.pointer
        let list = partitions.entries.map(\.partition)
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            if let handler = rebalanceHandler, !list.isEmpty {
                let offsets = Blocking.wait { await handler.assigned(list) } ?? [:]
                for index in 0..<Int(partitions.pointee.cnt) {
                    let element = partitions.pointee.elems[index]
                    let tp = TopicPartition(topic: String(cString: element.topic), partition: element.partition)
                    if let offset = offsets[tp] { partitions.pointee.elems[index].offset = offset }
                }
            }
            logger.info("Kafka partitions assigned", metadata: ["kafka.partitions": "\(list)"])
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let lost = rd_kafka_assignment_lost(rk) != 0
            logger.info("Kafka partitions revoked", metadata: ["kafka.partitions": "\(list)", "kafka.lost": "\(lost)"])
            if let handler = rebalanceHandler, !list.isEmpty { Blocking.wait { await handler.revoked(list) } }
            onRevoke(Set(list))
            if !lost {
                let commit = rd_kafka_commit(rk, nil, 0)
                if commit != RD_KAFKA_RESP_ERR_NO_ERROR && commit != RD_KAFKA_RESP_ERR__NO_OFFSET {
                    logger.warning("commit before revoke failed: \(String(cString: rd_kafka_err2str(commit)))")
                }
            }
        default:
            logger.error("Kafka rebalance error: \(String(cString: rd_kafka_err2str(err)))")
        }
        Self.apply(err, partitions, rk: rk)
    }

    /// Applies a rebalance to librdkafka, eager or cooperative.
    static func apply(
        _ err: rd_kafka_resp_err_t, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>, rk: OpaquePointer
    ) {
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        if cooperative {
            let error = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
                ? rd_kafka_incremental_assign(rk, partitions) : rd_kafka_incremental_unassign(rk, partitions)
            if let error { rd_kafka_error_destroy(error) }
        } else {
            rd_kafka_assign(rk, err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? partitions : nil)
        }
    }

    // MARK: - Offsets

    /// Stores offsets (next offset to read) to be committed; returns partitions not stored because
    /// this consumer no longer owns them.
    func store(_ offsets: [TopicPartition: Int64]) -> [TopicPartition] {
        guard !offsets.isEmpty else { return [] }
        let list = Array(offsets.keys).makeList(offsets: offsets)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        rd_kafka_offsets_store(handle.pointer, list)
        return list.entries.filter { $0.error != RD_KAFKA_RESP_ERR_NO_ERROR }.map(\.partition)
    }

    func commit() async throws(KafkaError) {
        let handle = handle
        let err = rd_kafka_resp_err_t(rawValue: await Blocking.run { rd_kafka_commit(handle.pointer, nil, 0).rawValue })
        if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
            throw handle.explain(KafkaError(err, "commit"))
        }
    }

    func seek(_ partition: TopicPartition, to offset: Int64) throws(KafkaError) {
        let list = [partition].makeList(offsets: [partition: offset])
        defer { rd_kafka_topic_partition_list_destroy(list) }
        if let error = rd_kafka_seek_partitions(handle.pointer, list, 5000) {
            throw KafkaError(consuming: error, "seek \(partition) to \(offset)")
        }
        if let failed = list.entries.first(where: { $0.error != RD_KAFKA_RESP_ERR_NO_ERROR }) {
            throw KafkaError(failed.error, "seek \(partition) to \(offset)")
        }
    }

    /// The group's committed offsets (next offset to read) for the partitions that have one.
    func committed(_ partitions: [TopicPartition], timeout: Duration) async throws(KafkaError) -> [TopicPartition: Int64] {
        let handle = handle
        let result = await Blocking.run { () -> Result<[TopicPartition: Int64], KafkaError> in
            let list = partitions.makeList()
            defer { rd_kafka_topic_partition_list_destroy(list) }
            let err = rd_kafka_committed(handle.pointer, list, Int32(timeout.milliseconds))
            if err != RD_KAFKA_RESP_ERR_NO_ERROR { return .failure(handle.explain(KafkaError(err, "fetch committed offsets"))) }
            var offsets: [TopicPartition: Int64] = [:]
            for entry in list.entries where entry.offset >= 0 { offsets[entry.partition] = entry.offset }
            return .success(offsets)
        }
        return try result.get()
    }

    /// Assigns `starts` and reads on the calling thread until every partition reports its end
    /// (`enable.partition.eof` must be on); returns the end offsets. For short admin reads only.
    func readToEnd(from starts: [TopicPartition: Int64], timeout: Duration) -> Result<[TopicPartition: Int64], KafkaError> {
        do { try assign(starts) } catch { return .failure(error) }
        var ends: [TopicPartition: Int64] = [:]
        let deadline = ContinuousClock.now + timeout
        while ends.count < starts.count {
            guard ContinuousClock.now < deadline else {
                return .failure(handle.explain(KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, "reading to the end of \(starts.keys.count) partitions")))
            }
            guard let message = rd_kafka_consumer_poll(handle.pointer, 100) else { continue }
            defer { rd_kafka_message_destroy(message) }
            let err = message.pointee.err
            guard let rkt = message.pointee.rkt else { continue }
            let partition = TopicPartition(topic: String(cString: rd_kafka_topic_name(rkt)), partition: message.pointee.partition)
            if err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
                ends[partition] = message.pointee.offset
            } else if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                return .failure(handle.explain(KafkaError(err, "reading \(partition) to its end")))
            }
        }
        return .success(ends)
    }

    // MARK: - Polling

    /// Starts the polling thread. Returns `false` if it already ran or the engine is closed.
    func start(maxRecords: Int, maxWait: Duration, deliver: @escaping Deliver) -> Bool {
        let started = state.withLock { state -> Bool in
            guard state.phase == .idle else { return false }
            state.phase = .running
            return true
        }
        guard started else { return false }
        let thread = Thread { [self] in
            pollLoop(maxRecords: max(1, maxRecords), timeout: Int32(max(1, maxWait.milliseconds)), deliver: deliver)
            finishClosing()
        }
        thread.name = "kafka-consumer-poll"
        thread.start()
        return true
    }

    private var isClosing: Bool { state.withLock { $0.phase == .closing } }

    private func pollLoop(maxRecords: Int, timeout: Int32, deliver: Deliver) {
        let messages = UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>.allocate(capacity: maxRecords)
        defer { messages.deallocate() }
        var topicNames: [OpaquePointer: String] = [:]
        while !isClosing {
            if let fatal = handle.callbacks.fatalError {
                onStop(fatal)
                return
            }
            let count = rd_kafka_consume_batch_queue(queue, Int32(timeout), messages, maxRecords)
            if count < 0 {
                onStop(handle.explain(KafkaError(rd_kafka_last_error(), "consume")))
                return
            }
            var records: [ConsumedRecord] = []
            records.reserveCapacity(count)
            var reachedEnd: [TopicPartition] = []
            var stopError: KafkaError?
            for index in 0..<count {
                let message = messages[index]!
                defer { rd_kafka_message_destroy(message) }
                let topic: String
                if let rkt = message.pointee.rkt {
                    if let known = topicNames[rkt] { topic = known } else {
                        topic = String(cString: rd_kafka_topic_name(rkt))
                        topicNames[rkt] = topic
                    }
                } else {
                    topic = ""
                }
                let err = message.pointee.err
                if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    records.append(Self.record(message, topic: topic))
                } else if err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    reachedEnd.append(TopicPartition(topic: topic, partition: message.pointee.partition))
                } else {
                    let text = rd_kafka_message_errstr(message).map { String(cString: $0) } ?? ""
                    let error = handle.explain(KafkaError(err, "consume \(topic)[\(message.pointee.partition)]: \(text)"))
                    if err == RD_KAFKA_RESP_ERR__FATAL || handle.callbacks.fatalError != nil {
                        stopError = handle.callbacks.fatalError ?? error
                    } else {
                        logger.warning("\(error.reason)", metadata: ["kafka.topic": "\(topic)"])
                    }
                }
            }
            if !records.isEmpty || !reachedEnd.isEmpty {
                guard deliver(records, reachedEnd) else { return }
            }
            if let stopError {
                onStop(stopError)
                return
            }
        }
    }

    static func record(_ message: UnsafeMutablePointer<rd_kafka_message_t>, topic: String) -> ConsumedRecord {
        let raw = message.pointee
        let key = raw.key.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.key_len)) }
        let value = raw.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.len)) }
        var headers: [KafkaHeader] = []
        var headerList: OpaquePointer?
        if rd_kafka_message_headers(message, &headerList) == RD_KAFKA_RESP_ERR_NO_ERROR, let headerList {
            let count = rd_kafka_header_cnt(headerList)
            headers.reserveCapacity(count)
            for index in 0..<count {
                var name: UnsafePointer<CChar>?
                var bytes: UnsafeRawPointer?
                var size = 0
                guard rd_kafka_header_get_all(headerList, index, &name, &bytes, &size) == RD_KAFKA_RESP_ERR_NO_ERROR,
                    let name
                else { continue }
                headers.append(KafkaHeader(
                    key: String(cString: name), value: bytes.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }))
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let milliseconds = rd_kafka_message_timestamp(message, &timestampType)
        return ConsumedRecord(
            topic: topic, partition: raw.partition, offset: raw.offset, key: key, value: value, headers: headers,
            timestamp: milliseconds >= 0 ? Date(timeIntervalSince1970: Double(milliseconds) / 1000) : nil)
    }

    // MARK: - Closing

    /// Final commit, leave the group, end the batches. Safe to call more than once.
    func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            beginClosing(then: continuation)
        }
    }

    /// Starts closing without waiting (used when the owner goes away without calling `close`).
    func beginClosing(then waiter: CheckedContinuation<Void, Never>? = nil) {
        let previous = state.withLock { state -> Phase in
            let previous = state.phase
            if previous != .closed {
                if let waiter { state.closeWaiters.append(waiter) }
                if previous != .closing { state.phase = .closing }
            }
            return previous
        }
        switch previous {
        case .idle:
            let thread = Thread { [self] in finishClosing() }
            thread.name = "kafka-consumer-close"
            thread.start()
        case .running:
            onStop(nil)
            rd_kafka_queue_yield(queue)
        case .closing:
            break
        case .closed:
            waiter?.resume()
        }
    }

    private func finishClosing() {
        let rk = handle.pointer
        state.withLock { if $0.phase != .closed { $0.phase = .closing } }
        if isGroupMember && handle.callbacks.fatalError == nil {
            let err = rd_kafka_commit(rk, nil, 0)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
                logger.warning("final commit failed: \(String(cString: rd_kafka_err2str(err)))")
            }
        }
        let err = rd_kafka_consumer_close(rk)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.debug("consumer close: \(String(cString: rd_kafka_err2str(err)))")
        }
        onStop(nil)
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.phase = .closed
            defer { state.closeWaiters.removeAll() }
            return state.closeWaiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

extension ConsumerEngine {
    /// librdkafka's logical "beginning of the partition" offset.
    static let offsetBeginning = Int64(RD_KAFKA_OFFSET_BEGINNING)
}

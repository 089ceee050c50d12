import CRdKafka
import Dispatch
import Foundation
import Logging
import Synchronization

/// The outcome of one record of a batch, written by the delivery-report callback. Its address is the
/// record's per-message opaque, so a report finds its slot without a lookup.
struct DeliverySlot {
    var batch: Unmanaged<DeliveryBatch>
    var error: Int32
    var partition: Int32
    var offset: Int64
}

/// One `send` call: a slot per record and a countdown. The count starts one higher than the number of
/// records; the sender gives that extra token back once every record is enqueued, so the last
/// completion always finds the continuation in place.
final class DeliveryBatch: @unchecked Sendable {
    let slots: UnsafeMutablePointer<DeliverySlot>
    let count: Int
    private let remaining: Atomic<Int>
    private var continuation: CheckedContinuation<Void, Never>?

    init(count: Int) {
        self.count = count
        self.remaining = Atomic(count + 1)
        self.slots = .allocate(capacity: max(count, 1))
        let unmanaged = Unmanaged.passUnretained(self)
        for index in 0..<count {
            (slots + index).initialize(to: DeliverySlot(batch: unmanaged, error: 0, partition: -1, offset: -1))
        }
    }

    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }

    /// Records one finished record (delivered or failed).
    func finishOne() {
        if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            continuation!.resume()
        }
    }

    /// Waits until every record has finished; call once, after enqueueing all of them.
    func waitForCompletion() async {
        await withCheckedContinuation { continuation in
            self.continuation = continuation
            finishOne()
        }
    }
}

/// Suspended senders waiting for the local queue to drain. A generation counter closes the race
/// between "the queue was full" and "start waiting".
final class QueueSpace: Sendable {
    private let counter = Atomic<UInt64>(0)
    private let waiters = Mutex<[CheckedContinuation<Void, Never>]>([])

    /// Read before trying to enqueue (a lock-free load on the hot path).
    var generation: UInt64 { counter.load(ordering: .acquiring) }

    /// Suspends until space frees after `generation` was observed.
    func wait(after generation: UInt64) async {
        await withCheckedContinuation { continuation in
            let resumeNow = waiters.withLock { waiters -> Bool in
                if counter.load(ordering: .acquiring) != generation { return true }
                waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Called after deliveries freed queue space.
    func signal() {
        counter.add(1, ordering: .releasing)
        let ready = waiters.withLock { waiters -> [CheckedContinuation<Void, Never>] in
            guard !waiters.isEmpty else { return [] }
            defer { waiters.removeAll(keepingCapacity: true) }
            return waiters
        }
        for waiter in ready { waiter.resume() }
    }
}

/// What a batch send produced: every report, or per-record results when something failed.
enum SendOutcome {
    case delivered([DeliveryReport])
    case partial([Result<DeliveryReport, KafkaError>])
}

/// A librdkafka producer with a dedicated thread that blocks in `rd_kafka_poll` to serve delivery
/// reports and errors as they arrive.
final class ProducerEngine: @unchecked Sendable {
    let handle: ClientHandle
    let whenQueueFull: QueueFullBehavior
    let space = QueueSpace()
    private let topics = Mutex<[String: OpaquePointer]>([:])
    private let running = Atomic<Bool>(true)
    private let stopped = DispatchSemaphore(value: 0)
    nonisolated(unsafe) private static let emptyValue = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)

    init(properties: [String: String], whenQueueFull: QueueFullBehavior, logger: Logger) throws(KafkaError) {
        self.handle = try ClientHandle(kind: .producer, properties: properties, logger: logger) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
                guard let message, let opaque = message.pointee._private else { return }
                let slot = opaque.assumingMemoryBound(to: DeliverySlot.self)
                slot.pointee.error = message.pointee.err.rawValue
                slot.pointee.partition = message.pointee.partition
                slot.pointee.offset = message.pointee.offset
                slot.pointee.batch.takeUnretainedValue().finishOne()
            }
        }
        self.whenQueueFull = whenQueueFull
        let thread = Thread { [self] in pollLoop() }
        thread.name = "kafka-producer-poll"
        thread.start()
    }

    private func pollLoop() {
        while running.load(ordering: .acquiring) {
            if rd_kafka_poll(handle.pointer, 100) > 0 { space.signal() }
            if handle.callbacks.fatalError != nil { space.signal() }
        }
        rd_kafka_poll(handle.pointer, 0)
        space.signal()
        stopped.signal()
    }

    /// Stops the poll thread and releases topic handles; the librdkafka handle goes with the engine.
    func shutdown() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        stopped.wait()
        topics.withLock { topics in
            for topic in topics.values { rd_kafka_topic_destroy(topic) }
            topics.removeAll()
        }
    }

    private func topicHandle(_ name: String) -> OpaquePointer? {
        topics.withLock { topics in
            if let existing = topics[name] { return existing }
            guard let created = rd_kafka_topic_new(handle.pointer, name, nil) else { return nil }
            topics[name] = created
            return created
        }
    }

    // MARK: - Sending

    /// Records in librdkafka's queues: not yet sent, or sent and not yet acknowledged.
    var outstanding: Int { Int(rd_kafka_outq_len(handle.pointer)) }

    /// Enqueues every record and waits for all delivery reports: the reports in order, or the
    /// per-record results when at least one failed.
    func send(_ records: [OutgoingRecord]) async -> SendOutcome {
        await outcome(of: start(records))
    }

    /// A batch whose records are all enqueued (or failed to enqueue), delivery still pending.
    struct PendingSend: @unchecked Sendable {
        let batch: DeliveryBatch
        let records: [OutgoingRecord]
    }

    /// Enqueues every record, in order, waiting for queue space as configured, and returns without
    /// waiting for delivery: batches started one after the other keep their order per partition.
    func start(_ records: [OutgoingRecord]) async -> PendingSend {
        let batch = DeliveryBatch(count: records.count)
        var lastTopic: (name: String, handle: OpaquePointer)?
        for index in records.indices {
            let record = records[index]
            let slot = batch.slots + index
            if lastTopic?.name != record.topic {
                guard let handle = topicHandle(record.topic) else {
                    slot.pointee.error = RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue
                    batch.finishOne()
                    continue
                }
                lastTopic = (record.topic, handle)
            }
            while true {
                if let fatal = handle.callbacks.fatalError {
                    slot.pointee.error = fatal.librdkafkaCode ?? RD_KAFKA_RESP_ERR__FATAL.rawValue
                    batch.finishOne()
                    break
                }
                let generation = space.generation
                let err = enqueue(record, topic: lastTopic!.handle, slot: slot)
                if err == RD_KAFKA_RESP_ERR_NO_ERROR { break }
                if err == RD_KAFKA_RESP_ERR__QUEUE_FULL && whenQueueFull == .wait {
                    await space.wait(after: generation)
                    continue
                }
                slot.pointee.error = err.rawValue
                batch.finishOne()
                break
            }
        }
        return PendingSend(batch: batch, records: records)
    }

    /// Waits for every delivery report of `pending`: the reports in order, or the per-record results
    /// when at least one failed. Call once per pending batch.
    func outcome(of pending: PendingSend) async -> SendOutcome {
        let batch = pending.batch
        let records = pending.records
        await batch.waitForCompletion()
        var reports: [DeliveryReport] = []
        reports.reserveCapacity(records.count)
        for index in records.indices {
            let slot = batch.slots[index]
            guard slot.error == 0 else { break }
            reports.append(DeliveryReport(topic: records[index].topic, partition: slot.partition, offset: slot.offset))
        }
        if reports.count == records.count { return .delivered(reports) }
        return .partial(records.indices.map { index in
            let slot = batch.slots[index]
            if slot.error == 0 {
                return .success(DeliveryReport(topic: records[index].topic, partition: slot.partition, offset: slot.offset))
            }
            let err = rd_kafka_resp_err_t(rawValue: slot.error)
            if err == RD_KAFKA_RESP_ERR__FATAL, let fatal = handle.callbacks.fatalError { return .failure(fatal) }
            return .failure(handle.explain(KafkaError(err, "record \(index) to \(records[index].topic) not delivered")))
        })
    }

    private func enqueue(
        _ record: OutgoingRecord, topic: OpaquePointer, slot: UnsafeMutablePointer<DeliverySlot>
    ) -> rd_kafka_resp_err_t {
        var headers: OpaquePointer?
        if !record.headers.isEmpty {
            headers = rd_kafka_headers_new(record.headers.count)
            for header in record.headers {
                if let value = header.value {
                    value.withUnsafeBytes { bytes in
                        _ = rd_kafka_header_add(headers, header.key, -1, bytes.baseAddress ?? UnsafeRawPointer(Self.emptyValue), bytes.count)
                    }
                } else {
                    rd_kafka_header_add(headers, header.key, -1, nil, 0)
                }
            }
        }
        let err = withOptionalBytes(record.key) { keyPointer, keyCount in
            withOptionalBytes(record.value) { valuePointer, valueCount in
                withUnsafeTemporaryAllocation(of: rd_kafka_vu_t.self, capacity: 7) { fields in
                    var count = 0
                    func add(_ type: rd_kafka_vtype_t, _ fill: (inout rd_kafka_vu_t) -> Void) {
                        var field = rd_kafka_vu_t()
                        field.vtype = type
                        fill(&field)
                        fields[count] = field
                        count += 1
                    }
                    add(RD_KAFKA_VTYPE_RKT) { $0.u.rkt = topic }
                    add(RD_KAFKA_VTYPE_MSGFLAGS) { $0.u.i = RD_KAFKA_MSG_F_COPY }
                    add(RD_KAFKA_VTYPE_OPAQUE) { $0.u.ptr = UnsafeMutableRawPointer(slot) }
                    if let partition = record.partition { add(RD_KAFKA_VTYPE_PARTITION) { $0.u.i32 = partition } }
                    if let keyPointer {
                        add(RD_KAFKA_VTYPE_KEY) {
                            $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: keyPointer)
                            $0.u.mem.size = keyCount
                        }
                    }
                    if let valuePointer {
                        add(RD_KAFKA_VTYPE_VALUE) {
                            $0.u.mem.ptr = UnsafeMutableRawPointer(mutating: valuePointer)
                            $0.u.mem.size = valueCount
                        }
                    }
                    if let headers { add(RD_KAFKA_VTYPE_HEADERS) { $0.u.headers = headers } }
                    guard let error = rd_kafka_produceva(handle.pointer, fields.baseAddress, count) else {
                        return RD_KAFKA_RESP_ERR_NO_ERROR
                    }
                    let code = rd_kafka_error_code(error)
                    rd_kafka_error_destroy(error)
                    return code
                }
            }
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR, let headers { rd_kafka_headers_destroy(headers) }
        return err
    }

    private func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawPointer?, Int) -> R) -> R {
        guard let bytes else { return body(nil, 0) }
        return bytes.withUnsafeBytes { buffer in
            body(buffer.baseAddress ?? UnsafeRawPointer(Self.emptyValue), buffer.count)
        }
    }

    // MARK: - Flushing

    /// Waits until every queued record is delivered or failed, for at most `timeout`.
    func flush(timeout: Duration) async throws(KafkaError) {
        let handle = handle
        let err = await Blocking.run { rd_kafka_flush(handle.pointer, Int32(timeout.milliseconds)).rawValue }
        space.signal()
        let code = rd_kafka_resp_err_t(rawValue: err)
        if code != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw handle.explain(KafkaError(code, "flush did not finish within \(timeout); \(rd_kafka_outq_len(handle.pointer)) records outstanding"))
        }
    }
}

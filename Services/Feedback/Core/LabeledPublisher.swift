import Contracts
import Kafka
import Logging

/// Delivers the join store's outbox to `loop.labeled` and confirms it, so every labeled example is
/// written exactly once even across `kill -9`.
///
/// Each example goes to the `loop.labeled` partition of its input partition (the topics are
/// co-partitioned), so one instance is the only writer of that partition, and carries its requestId
/// and label source in headers. After a crash the outbox still holds the examples whose
/// acknowledgement was not recorded: ``recover()`` reads each such partition from the last
/// recorded end and sends only the examples not already there, re-reading from
/// `loop.predictions` the predictions of examples stored as a ``PredictionReference``.
public struct LabeledPublisher: Sendable {
    /// Header holding the example's requestId.
    public static let requestIdHeader = "loop-request-id"
    /// Header holding the example's label source.
    public static let labelSourceHeader = "loop-label-source"

    let producer: KafkaProducer
    let store: JoinStore
    let topic: String
    let predictionsTopic: String
    let kafka: KafkaConfig
    let logger: Logger

    /// A publisher of `store`'s outbox to `topic` (`loop.labeled`), re-reading referenced
    /// predictions from `predictionsTopic` (`loop.predictions`) when it recovers.
    public init(
        producer: KafkaProducer, store: JoinStore, topic: String, predictionsTopic: String, kafka: KafkaConfig, logger: Logger
    ) {
        self.producer = producer
        self.store = store
        self.topic = topic
        self.predictionsTopic = predictionsTopic
        self.kafka = kafka
        self.logger = logger
    }

    /// Sends `entries`, waits for every acknowledgement, then removes them from the outbox. A failed
    /// delivery is not retried here (a retry could write an example twice): it throws, and the
    /// outbox is reconciled by ``recover()`` on the next start.
    public func publish(_ entries: [OutboxEntry]) async throws(FeedbackError) {
        guard !entries.isEmpty else { return }
        let reports = try await send(entries)
        try store.confirmDelivered(entries, reports: reports)
    }

    /// Sends `entries` and waits for every acknowledgement, without confirming them: the caller
    /// confirms with ``JoinStore/confirmDelivered(_:reports:)``, in the order the batches were applied.
    public func send(_ entries: [OutboxEntry]) async throws(FeedbackError) -> [DeliveryReport] {
        guard !entries.isEmpty else { return [] }
        let records = entries.map { entry in
            OutgoingRecord(
                topic: topic, key: Array(entry.entity.utf8), value: entry.bytes,
                headers: [KafkaHeader(key: Self.requestIdHeader, string: entry.requestId),
                          KafkaHeader(key: Self.labelSourceHeader, string: entry.labelSource.rawValue)],
                partition: entry.partition)
        }
        do {
            return try await producer.send(records)
        } catch {
            throw FeedbackError(.delivery, "labeled examples not acknowledged by \(topic): \(error)", isRetryable: true)
        }
    }

    /// Reconciles the outbox after a restart: examples already in `loop.labeled` are confirmed,
    /// the others sent. Returns how many were sent.
    @discardableResult
    public func recover() async throws(FeedbackError) -> Int {
        let pending = try store.outbox()
        guard !pending.isEmpty else { return 0 }
        var offsets: [TopicPartition: Int64] = [:]
        let partitions = Set(pending.map(\.partition)).sorted().map { TopicPartition(topic: topic, partition: $0) }
        for partition in partitions {
            if let offset = try store.outputOffset(partition: partition.partition) { offsets[partition] = offset }
        }
        var written = Set<String>()
        do {
            let reader = try PartitionReader(config: kafka, partitions: partitions, offsets: offsets, logger: logger)
            reading: for try await event in reader.events() {
                switch event {
                case .records(let records):
                    for record in records {
                        guard let requestId = record.header(Self.requestIdHeader)?.value,
                              let source = record.header(Self.labelSourceHeader)?.value
                        else { continue }
                        written.insert(OutboxEntry.outputKey(
                            requestId: String(decoding: requestId, as: UTF8.self),
                            labelSource: String(decoding: source, as: UTF8.self)))
                    }
                case .caughtUp:
                    break reading
                }
            }
            await reader.close()
        } catch {
            throw FeedbackError(.delivery, "cannot read \(topic) to reconcile the outbox: \(error)", isRetryable: true)
        }
        let delivered = pending.filter { written.contains($0.outputKey) }
        let missing = try await splice(pending.filter { !written.contains($0.outputKey) })
        try store.confirmDelivered(delivered, reports: [])
        try await publish(missing)
        logger.info("outbox reconciled", metadata: [
            "feedback.outbox.already_written": "\(delivered.count)", "feedback.outbox.sent": "\(missing.count)",
        ])
        return missing.count
    }

    /// Fills in the bytes of entries stored as a ``PredictionReference`` from their predictions in
    /// `loop.predictions`; throws if one is no longer there.
    func splice(_ entries: [OutboxEntry]) async throws(FeedbackError) -> [OutboxEntry] {
        var wanted: [Int32: Set<Int64>] = [:]
        for entry in entries {
            if let reference = entry.reference, entry.bytes.isEmpty { wanted[reference.partition, default: []].insert(reference.offset) }
        }
        guard !wanted.isEmpty else { return entries }
        var found: [TopicPartition: [Int64: [UInt8]]] = [:]
        for record in try await readPredictions(at: wanted) {
            found[TopicPartition(topic: record.topic, partition: record.partition), default: [:]][record.offset] = record.value ?? []
        }
        var spliced: [OutboxEntry] = []
        spliced.reserveCapacity(entries.count)
        for var entry in entries {
            if let reference = entry.reference, entry.bytes.isEmpty {
                let partition = TopicPartition(topic: predictionsTopic, partition: reference.partition)
                guard let bytes = found[partition]?[reference.offset], let prediction = try? ServedPrediction(bytes: bytes),
                      prediction.requestId == entry.requestId
                else {
                    throw FeedbackError(
                        .delivery, "the prediction of \(entry.requestId) is no longer at \(predictionsTopic)[\(reference.partition)]@\(reference.offset)")
                }
                entry.bytes = prediction.labeledExampleBytes(
                    label: reference.label, source: entry.labelSource, delaySeconds: reference.delaySeconds, value: reference.value)
            }
            spliced.append(entry)
        }
        return spliced
    }

    /// Reads back from `loop.predictions` the served records of the predictions the join store
    /// still needs but does not hold in memory (after a restart: see
    /// ``JoinStore/predictionsToRestore()``). Returns how many were restored; those no longer in
    /// the topic are logged, and an outcome for one is counted as malformed.
    @discardableResult
    public func restoreWaiting() async throws(FeedbackError) -> Int {
        let wanted = store.predictionsToRestore()
        let count = wanted.values.reduce(0) { $0 + $1.count }
        guard count > 0 else { return 0 }
        let restored = store.restoreServed(from: try await readPredictions(at: wanted.mapValues(Set.init)))
        if restored < count {
            logger.warning("waiting predictions no longer in \(predictionsTopic)", metadata: ["feedback.restore.missing": "\(count - restored)"])
        }
        logger.info("waiting predictions restored", metadata: ["feedback.restore.count": "\(restored)"])
        return restored
    }

    /// The records at `offsets` (partition → offsets) of `loop.predictions` that are still there,
    /// reading each partition from its lowest wanted offset until all are found or it is caught up.
    func readPredictions(at offsets: [Int32: Set<Int64>]) async throws(FeedbackError) -> [ConsumedRecord] {
        let wanted = Dictionary(uniqueKeysWithValues: offsets.map { (TopicPartition(topic: predictionsTopic, partition: $0.key), $0.value) })
        var found: [ConsumedRecord] = []
        do {
            let reader = try PartitionReader(
                config: kafka, partitions: wanted.keys.sorted { $0.partition < $1.partition },
                offsets: wanted.mapValues { $0.min() ?? 0 }, logger: logger)
            var remaining = wanted
            var left = remaining.values.reduce(0) { $0 + $1.count }
            reading: for try await event in reader.events() {
                switch event {
                case .records(let records):
                    for record in records
                    where remaining[TopicPartition(topic: record.topic, partition: record.partition)]?.remove(record.offset) != nil {
                        found.append(record)
                        left -= 1
                    }
                    if left == 0 { break reading }
                case .caughtUp:
                    break reading
                }
            }
            await reader.close()
        } catch {
            throw FeedbackError(.delivery, "cannot read \(predictionsTopic): \(error)", isRetryable: true)
        }
        return found
    }
}

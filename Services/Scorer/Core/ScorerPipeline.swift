import Contracts
import Features
import Foundation
import Kafka
import Logging
import Prometheus
import ServiceKit
import Synchronization

/// The scorer's data path: consumes score requests from `loop.events` in a consumer group, keeps the
/// features of exactly its assigned partitions from `loop.features`, follows `loop.models`, and
/// writes one `Prediction` per requestId to `loop.predictions`, committing offsets only after the
/// predictions are acknowledged.
///
/// Idempotency: a per-partition bounded set of answered requestIds (``ScorerOptions/dedupeCapacity``),
/// restored on assignment by reading the partition's `loop.predictions` (co-partitioned by
/// entity) from the beginning. The output topic is the record of what was answered, so a crash
/// between producing and committing never yields a second prediction on replay.
public final class ScorerPipeline: Sendable {
    public let config: LoopConfig
    public let topics: Topics
    public let layout: RequestVectorLayout
    /// The features of the assigned partitions.
    public let features = FeatureTable()
    /// The requestIds answered per assigned partition.
    public let deduplicator: RequestDeduplicator
    /// Running counts.
    public let statistics = ScorerStatistics()

    let options: ScorerOptions
    /// The connection settings of every consumer and reader (with ``ScorerOptions/fetchWait``).
    let kafka: KafkaConfig
    let featureSchema: Features.FeatureSchema
    let metrics: ScorerMetrics
    let readiness: Readiness
    let logger: Logger
    let consumer: KafkaConsumer
    let producer: KafkaProducer
    private let serving = Mutex<ServingModels>(.baseline)
    private let owned = Mutex<Set<Int32>>([])
    /// Reads `loop.models` and `loop.features` of every assigned partition with one handle.
    let changelogReader: AssignableReader
    private let catchUps = Mutex(FeatureCatchUps())
    private let gate = BatchGate()
    private let modelsLoaded = Signal()
    private let failure = Mutex<ScorerError?>(nil)
    /// Whether score requests feed features, so the features of a request's own time will come.
    private let requestsFeedFeatures: Bool

    /// Readiness condition: `loop.models` read up to its end.
    public static let modelsCondition = "scorer.models_loaded"
    /// Readiness condition: partitions assigned and their features and answered requestIds restored.
    public static let assignedCondition = "scorer.partitions_restored"

    /// Builds the pipeline; nothing connects until ``run()``.
    public init(
        config: LoopConfig, options: ScorerOptions = ScorerOptions(), kafka: KafkaConfig,
        metrics: PrometheusCollectorRegistry, readiness: Readiness = Readiness(), logger: Logger
    ) throws {
        try options.validate()
        self.config = config
        self.options = options
        var kafka = kafka
        if kafka.extra["fetch.wait.max.ms"] == nil { kafka.extra["fetch.wait.max.ms"] = String(Self.wholeMilliseconds(options.fetchWait)) }
        self.kafka = kafka
        self.topics = config.topics.names
        self.featureSchema = try Features.FeatureSchema(settings: config.features)
        self.layout = try RequestVectorLayout(config: config, featureSchema: featureSchema)
        self.deduplicator = RequestDeduplicator(capacity: options.dedupeCapacity)
        requestsFeedFeatures = config.features.definitions.contains { $0.eventTypes.contains(EventType.scoreRequest.description) }
        self.metrics = ScorerMetrics(registry: metrics)
        self.readiness = readiness
        self.logger = logger
        consumer = try KafkaConsumer(config: kafka, groupID: options.groupID, consumer: options.consumer, logger: logger)
        var producerKafka = kafka
        producerKafka.extra["fetch.wait.max.ms"] = nil
        producer = try KafkaProducer(config: producerKafka, producer: options.producer, logger: logger)
        changelogReader = try AssignableReader(config: kafka, logger: logger)
        readiness.require(Self.modelsCondition)
        readiness.require(Self.assignedCondition)
    }

    /// The models serving now.
    public var models: ServingModels { serving.withLock { $0 } }

    /// The partitions of `loop.events` this instance owns and has restored.
    public var ownedPartitions: Set<Int32> { owned.withLock { $0 } }

    // MARK: - Running

    /// Reads `loop.models` to its end, joins the group and scores until ``stop()``.
    ///
    /// Batches overlap: while up to ``ScorerOptions/maxInFlight`` batches of predictions await
    /// their acknowledgements, the next batch is decoded and scored. Offsets are marked strictly in
    /// order, each batch once it and every earlier batch are acknowledged.
    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.followChangelogs() }
            await modelsLoaded.wait()
            try consumer.subscribe(topics: [topics.events], rebalance: Rebalancer(pipeline: self))
            let acknowledgements = InOrderAcknowledgements()
            try await withThrowingTaskGroup(of: Void.self) { sends in
                var inFlight = 0
                var sequence = 0
                for try await batch in consumer.batches(maxRecords: options.maxBatch, maxWait: options.maxBatchWait) {
                    let prepared = await prepare(batch, sequence: sequence)
                    sequence += 1
                    if inFlight >= options.maxInFlight {
                        try await sends.next()
                        inFlight -= 1
                    }
                    // Enqueued here, in batch order, so predictions reach each partition in that order.
                    let sending = ContinuousClock.now
                    let delivery = await producer.enqueue(prepared.outgoing)
                    statistics.stages.add(enqueue: ContinuousClock.now - sending)
                    sends.addTask {
                        try await self.deliver(prepared, delivery, sending: sending, acknowledgements: acknowledgements)
                    }
                    inFlight += 1
                }
                try await sends.waitForAll()
            }
            group.cancelAll()
        }
        closeFollowers(catchUps.withLock { Array($0.followed) })
        if let failure = failure.withLock({ $0 }) { throw failure }
    }

    /// Finishes the batch in flight, commits, leaves the group and ends ``run()``.
    public func stop() async {
        readiness.beginShutdown()
        await consumer.close()
    }

    // MARK: - Batches

    /// Decodes, waits (bounded) for features, scores and encodes one batch. Enters the batch gate,
    /// which ``deliver(_:acknowledgements:)`` leaves once the batch's offsets are marked.
    ///
    /// Decoding and scoring run in ``ScorerOptions/lanes`` lanes over consecutive slices of the
    /// batch, whose outputs are joined in the batch's order; deduplication and the feature lookups
    /// run once, in order, between the two.
    private func prepare(_ batch: [ConsumedRecord], sequence: Int) async -> PreparedBatch {
        gate.enter()
        let received = ContinuousClock.now
        let models = serving.withLock { $0 }
        let mine = owned.withLock { $0 }
        var prepared = PreparedBatch(sequence: sequence, received: received)
        prepared.produceTimes.reserveCapacity(batch.count)
        var requestRecords: [Int] = []
        requestRecords.reserveCapacity(batch.count)
        for (index, record) in batch.enumerated() {
            // Records of a partition revoked meanwhile are neither scored nor marked: the new owner reads them.
            guard mine.contains(record.partition) else { continue }
            prepared.offsets[record.partition] = max(prepared.offsets[record.partition] ?? -1, record.offset)
            if let produced = record.timestamp { prepared.produceTimes.append(produced) }
            guard ScoreRequest.isScoreRequest(record) else {
                prepared.tally.other += 1
                continue
            }
            requestRecords.append(index)
        }
        prepared.tally.requests = requestRecords.count
        let (logger, toDecode) = (logger, requestRecords)
        let decodedLanes = await inLanes(toDecode.count) { range in
            var parser = JSONParser()
            var requests: [PendingRequest] = []
            requests.reserveCapacity(range.count)
            for index in toDecode[range] {
                let record = batch[index]
                do throws(ScorerError) {
                    requests.append(PendingRequest(
                        request: try ScoreRequest(record: record, parser: &parser), partition: record.partition, offset: record.offset))
                } catch {
                    logger.warning("unreadable score request skipped", metadata: ["error.message": "\(error)"])
                }
            }
            return requests
        }
        let requests = decodedLanes.count == 1 ? decodedLanes[0] : Array(decodedLanes.joined())
        prepared.tally.invalid = requestRecords.count - requests.count
        let decoded = ContinuousClock.now
        if requestsFeedFeatures, !requests.isEmpty {
            let unready = await waitForFeatures(of: requests)
            prepared.tally.featureWaitTimeouts = unready
        }
        let waited = ContinuousClock.now
        var scoring: [ScoringItem] = []
        scoring.reserveCapacity(requests.count)
        features.withLookup { lookup in
            for item in requests {
                let request = item.request
                guard deduplicator.insert(request.requestId, partition: item.partition) else {
                    prepared.tally.duplicates += 1
                    continue
                }
                prepared.answered.append((request.requestId, item.partition))
                let state = features.takeRequestState(partition: item.partition, offset: item.offset)
                    ?? lookup(request.entity, item.partition)
                scoring.append(ScoringItem(request: request, state: state))
            }
        }
        for (partition, offset) in prepared.offsets { features.forgetRequestStates(partition: partition, through: offset) }
        let (layout, policy, predictions, toScore) = (layout, config.decision, topics.predictions, scoring)
        let scoredLanes = await inLanes(toScore.count) { range in
            let engine = PredictionEngine(layout: layout, policy: policy)
            var writer = PredictionWriter()
            var tally = BatchTally()
            var outgoing: [OutgoingRecord] = []
            outgoing.reserveCapacity(range.count)
            for item in toScore[range] {
                let request = item.request
                var prediction = engine.predict(request, state: item.state, models: models)
                prediction.latencyMs = Self.milliseconds(ContinuousClock.now - received)
                tally.add(prediction)
                let headers = request.traceparent.map { [KafkaHeader(key: "traceparent", string: $0)] } ?? []
                outgoing.append(OutgoingRecord(
                    topic: predictions, key: Array(request.entity.utf8), value: writer.write(prediction), headers: headers))
            }
            return (outgoing, tally)
        }
        if scoredLanes.count == 1 {
            prepared.outgoing = scoredLanes[0].0
        } else {
            prepared.outgoing.reserveCapacity(toScore.count)
            for lane in scoredLanes { prepared.outgoing.append(contentsOf: lane.0) }
        }
        for lane in scoredLanes { prepared.tally.merge(lane.1) }
        let scored = ContinuousClock.now
        statistics.stages.add(decode: decoded - received, featureWait: waited - decoded, score: scored - waited)
        return prepared
    }

    /// Runs `work` over `0..<count` split into up to ``ScorerOptions/lanes`` consecutive slices of
    /// at least ``ScorerOptions/minimumLaneSize`` each, the first on this task and the others as
    /// child tasks, and returns the results in slice order.
    private func inLanes<Result: Sendable>(
        _ count: Int, _ work: @escaping @Sendable (Range<Int>) -> Result
    ) async -> [Result] {
        let lanes = max(1, min(options.lanes, count / options.minimumLaneSize))
        guard lanes > 1 else { return [work(0..<count)] }
        let bounds = (0...lanes).map { $0 * count / lanes }
        return await withTaskGroup(of: (Int, Result).self) { group in
            for lane in 1..<lanes {
                group.addTask { (lane, work(bounds[lane]..<bounds[lane + 1])) }
            }
            var results: [(Int, Result)] = [(0, work(bounds[0]..<bounds[1]))]
            results.reserveCapacity(lanes)
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    /// Awaits the acknowledgements of one enqueued batch, then marks its offsets in order with the
    /// other batches.
    private func deliver(
        _ prepared: PreparedBatch, _ delivery: KafkaProducer.PendingDelivery, sending: ContinuousClock.Instant,
        acknowledgements: InOrderAcknowledgements
    ) async throws {
        if !prepared.outgoing.isEmpty {
            do {
                _ = try await delivery.reports()
            } catch {
                // Nothing of this batch or any later one is marked: stop, committing only what came before.
                for (id, partition) in prepared.answered { deduplicator.remove([id], partition: partition) }
                gate.abandon()
                await consumer.close()
                throw ScorerError(.kafka, "predictions not acknowledged: \(error)", isRetryable: error.isRetriable)
            }
        }
        let acknowledged = ContinuousClock.now
        statistics.stages.add(acknowledgement: acknowledged - sending)
        acknowledgements.complete(prepared.sequence) { [consumer, topics, gate] in
            for (partition, offset) in prepared.offsets {
                consumer.markProcessed(topic: topics.events, partition: partition, offset: offset)
            }
            gate.leave()
        }
        record(prepared)
    }

    /// Waits, up to ``ScorerOptions/featureWait``, until the features of every request are as of
    /// its event time. A request is ready once the feature-store's state as of that very request
    /// has arrived (`fs_request_offset`; it is what the request is scored with, so later events
    /// never leak into its features), once its entity's state has reached the request's event
    /// time, or once the feature-store has published everything it derived from `loop.events` up to
    /// and including the request's offset (its `fs_input_next` changelog header): from then on no
    /// newer features for it are coming (a new entity, a request too late to apply). The
    /// feature-store applies the request itself, so this only waits while it lags behind.
    /// Returns how many requests were still not ready when the wait ended.
    private func waitForFeatures(of requests: [PendingRequest]) async -> Int {
        let deadline = ContinuousClock.now + options.featureWait
        var unready = requests.count
        while true {
            unready = features.withLookup { lookup, inputNext in
                var count = 0
                for item in requests {
                    if let next = inputNext(item.partition), next > item.offset { continue }
                    if features.hasRequestState(partition: item.partition, offset: item.offset) { continue }
                    let latest = lookup(item.request.entity, item.partition)?.latestEventTime ?? -Double.infinity
                    if latest * 1000 < Double(item.request.eventTimeMs) { count += 1 }
                }
                return count
            }
            guard unready > 0, ContinuousClock.now < deadline else { return unready }
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    private func record(_ prepared: PreparedBatch) {
        let tally = prepared.tally
        record(tally)
        if tally.requests > 0 { metrics.batchSize.record(Double(tally.requests)) }
        let now = Date()
        for produced in prepared.produceTimes {
            metrics.endToEnd.record(.nanoseconds(Int64(max(0, now.timeIntervalSince(produced)) * 1e9)))
        }
        metrics.batchLatency.record(ContinuousClock.now - prepared.received)
    }

    private func record(_ tally: BatchTally) {
        statistics.requestsRead.add(tally.requests, ordering: .relaxed)
        statistics.predictionsProduced.add(tally.predictions, ordering: .relaxed)
        statistics.duplicatesSkipped.add(tally.duplicates, ordering: .relaxed)
        statistics.invalidSkipped.add(tally.invalid, ordering: .relaxed)
        statistics.featureWaitTimeouts.add(tally.featureWaitTimeouts, ordering: .relaxed)
        metrics.requests.increment(by: Int64(tally.requests))
        metrics.otherEvents.increment(by: Int64(tally.other))
        metrics.invalidRequests.increment(by: Int64(tally.invalid))
        metrics.duplicates.increment(by: Int64(tally.duplicates))
        metrics.featureWaitTimeouts.increment(by: Int64(tally.featureWaitTimeouts))
        for (key, count) in tally.byOutcome {
            metrics.predictions(route: key.route, role: key.role, version: key.version, count: count)
        }
        for (reason, count) in tally.reasons { metrics.routed(reason: reason, count: count) }
        for score in tally.scores { metrics.scores.record(score) }
        for age in tally.ages { metrics.featureAge.record(age) }
    }

    static func wholeMilliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }

    static func milliseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }

    // MARK: - Synchronous scoring

    /// Scores one request now with the same features, models and logging as the stream, for
    /// `POST /v1/score`: produces the prediction to `loop.predictions` and returns it once
    /// acknowledged. A requestId already answered is a ``ScorerError/Code/invalidRequest`` error.
    public func score(_ request: ScoreRequest) async throws(ScorerError) -> Prediction {
        let started = ContinuousClock.now
        guard !deduplicator.contains(request.requestId) else {
            throw ScorerError(.invalidRequest, "requestId \(request.requestId) was already answered")
        }
        let engine = PredictionEngine(layout: layout, policy: config.decision)
        var prediction = engine.predict(request, state: features.state(of: request.entity), models: models)
        prediction.latencyMs = Self.milliseconds(ContinuousClock.now - started)
        let headers = request.traceparent.map { [KafkaHeader(key: "traceparent", string: $0)] } ?? []
        let report: DeliveryReport
        do {
            report = try await producer.send(OutgoingRecord(
                topic: topics.predictions, key: Array(request.entity.utf8), value: prediction.bytes, headers: headers))
        } catch {
            throw ScorerError(.kafka, "prediction not acknowledged: \(error)", isRetryable: error.isRetriable)
        }
        _ = deduplicator.insert(request.requestId, partition: report.partition)
        var tally = BatchTally()
        tally.requests = 1
        tally.add(prediction)
        record(tally)
        return prediction
    }

    // MARK: - loop.models and loop.features

    /// Follows `loop.models` (from the beginning) and the `loop.features` partitions added by
    /// assignments with one reader until cancelled: publishes each new registry state, stores each
    /// partition's feature records in ``features`` and fires the catch-up signals. If the reader
    /// fails, the pipeline stops.
    private func followChangelogs() async {
        let reader = changelogReader
        let modelsPartition = TopicPartition(topic: topics.models, partition: 0)
        var book = ModelBook(layout: layout)
        do {
            try reader.add([modelsPartition])
            try await withTaskCancellationHandler {
                for try await event in reader.events(maxRecords: 5000, maxWait: .milliseconds(5)) {
                    switch event {
                    case .records(let records):
                        var start = records.startIndex
                        while start < records.endIndex {
                            let (topic, partition) = (records[start].topic, records[start].partition)
                            var end = start + 1
                            while end < records.endIndex && records[end].partition == partition && records[end].topic == topic { end += 1 }
                            if topic == modelsPartition.topic { apply(records[start..<end], to: &book) } else { store(records[start..<end], partition: partition) }
                            start = end
                        }
                    case .caughtUp(let partitions):
                        if partitions.contains(modelsPartition) {
                            readiness.satisfy(Self.modelsCondition)
                            modelsLoaded.fire()
                            logger.info("loop.models read", metadata: ["registry.revision": "\(models.revision)"])
                        }
                        let signals = catchUps.withLock { catchUps in
                            partitions.compactMap { $0.topic == topics.features ? catchUps.waiting.removeValue(forKey: $0.partition) : nil }
                        }
                        for signal in signals { signal.fire() }
                    }
                }
            } onCancel: {
                Task { await reader.close() }
            }
        } catch {
            if !Task.isCancelled {
                logger.error("loop.models and loop.features reader failed; stopping", metadata: ["error.message": "\(error)"])
                failure.withLock { $0 = ScorerError(.kafka, "reading loop.models and loop.features failed: \(error)", isRetryable: true) }
                modelsLoaded.fire()
                await consumer.close()
            }
        }
        let signals = catchUps.withLock { catchUps in
            catchUps.ended = true
            defer { catchUps.waiting = [:] }
            return Array(catchUps.waiting.values)
        }
        for signal in signals { signal.fire() }
    }

    /// Applies a run of `loop.models` records to `book` and serves the registry state if it changed.
    private func apply(_ records: ArraySlice<ConsumedRecord>, to book: inout ModelBook) {
        var changed = false
        for record in records {
            let key = record.key.map { String(decoding: $0, as: UTF8.self) } ?? ""
            do { changed = try book.apply(key: key, value: record.value) || changed } catch {
                logger.error("unreadable loop.models record skipped", metadata: [
                    "kafka.offset": "\(record.offset)", "error.message": "\(error)"])
            }
        }
        if changed { publish(&book) }
    }

    private func publish(_ book: inout ModelBook) {
        do {
            guard let next = try book.snapshot() else { return }
            serving.withLock { $0 = next }
            metrics.modelRevision.set(Double(next.revision))
            logger.info("serving registry revision", metadata: [
                "registry.revision": "\(next.revision)", "model.champion": "\(next.champion.map { String($0.version) } ?? "baseline")",
                "model.canary": "\(next.canary.map { String($0.version) } ?? "-")", "model.canary_share": "\(next.canaryShare)",
                "model.shadows": "\(next.shadows.map(\.version))",
            ])
        } catch {
            logger.error("registry state not served; the previous models keep serving", metadata: ["error.message": "\(error)"])
        }
    }

    // MARK: - Assignment

    /// Restores `partitions` of `loop.events`: their features (read to the end, then followed) and
    /// the requestIds already answered in them.
    func assigned(_ partitions: [Int32]) async {
        await withTaskGroup(of: Void.self) { group in
            for partition in partitions {
                group.addTask {
                    await self.startFollowing(partition)
                    await self.restoreAnswered(partition)
                }
            }
        }
        owned.withLock { $0.formUnion(partitions) }
        readiness.satisfy(Self.assignedCondition)
        logger.info("partitions restored", metadata: [
            "kafka.partitions": "\(partitions.sorted())", "scorer.entities": "\(features.entityCount)"])
    }

    /// Gives up `partitions` once the batch in flight is done.
    func revoked(_ partitions: [Int32]) async {
        owned.withLock { $0.subtract(partitions) }
        await gate.idle()
        closeFollowers(partitions)
        for partition in partitions { deduplicator.drop(partition) }
    }

    /// Adds `partition` to the `loop.features` reader (from the beginning) and returns once it
    /// has been read to its end.
    private func startFollowing(_ partition: Int32) async {
        closeFollowers([partition])
        features.open(partition)
        let caughtUp = Signal()
        let following = catchUps.withLock { catchUps -> Bool in
            guard !catchUps.ended else { return false }
            catchUps.followed.insert(partition)
            catchUps.waiting[partition] = caughtUp
            return true
        }
        guard following else { return }
        do {
            try changelogReader.add([TopicPartition(topic: topics.features, partition: partition)])
        } catch {
            logger.error("cannot read loop.features; requests of this partition get no features", metadata: [
                "kafka.partition": "\(partition)", "error.message": "\(error)"])
            caughtUp.fire()
        }
        await caughtUp.wait()
    }

    /// Stores one partition's run of `loop.features` records in ``features``.
    private func store(_ records: ArraySlice<ConsumedRecord>, partition: Int32) {
        var states: [(entity: String, state: EntityFeatureState?)] = []
        states.reserveCapacity(records.count)
        var requests: [(offset: Int64, state: EntityFeatureState)] = []
        var inputNext: Int64?
        for record in records {
            if let next = Self.completedInputNext(record) { inputNext = max(inputNext ?? next, next) }
            guard let key = record.key else { continue }
            let entity = String(decoding: key, as: UTF8.self)
            guard let value = record.value else {
                states.append((entity, nil))
                continue
            }
            do {
                let state = try EntityFeatureState(decoding: value, schema: featureSchema)
                states.append((entity, state))
                if let offset = Self.requestOffset(record) { requests.append((offset, state)) }
            } catch {
                metrics.badFeatureRecords.increment()
                logger.warning("undecodable loop.features record skipped", metadata: [
                    "kafka.partition": "\(partition)", "kafka.offset": "\(record.offset)", "error.message": "\(error)"])
            }
        }
        features.store(states, partition: partition, inputNext: inputNext, requests: requests)
        metrics.featureRecords.increment(by: Int64(states.count))
    }

    /// The `fs_request_offset` header: the record is the state as of the score request at that offset.
    static func requestOffset(_ record: ConsumedRecord) -> Int64? {
        FeatureChangelogHeader.requestOffset(record.header(FeatureChangelogHeader.requestOffset)?.value)
    }

    /// The `fs_input_next` header of the last record of a feature-store changelog batch: every state
    /// the feature-store derived from `loop.events` before that offset is then in the log.
    static func completedInputNext(_ record: ConsumedRecord) -> Int64? {
        let position = FeatureChangelogHeader.position(
            batch: record.header(FeatureChangelogHeader.batch)?.value,
            inputNext: record.header(FeatureChangelogHeader.inputNext)?.value)
        return position.flatMap { $0.isLast ? $0.inputNext : nil }
    }

    /// Stops reading `partitions` of `loop.features` and forgets their features.
    private func closeFollowers(_ partitions: [Int32]) {
        let signals = catchUps.withLock { catchUps in
            partitions.compactMap { partition -> Signal? in
                catchUps.followed.remove(partition)
                return catchUps.waiting.removeValue(forKey: partition)
            }
        }
        for signal in signals { signal.fire() }
        do {
            try changelogReader.remove(partitions.map { TopicPartition(topic: topics.features, partition: $0) })
        } catch {
            logger.warning("loop.features partitions not removed from the reader", metadata: [
                "kafka.partitions": "\(partitions)", "error.message": "\(error)"])
        }
        for partition in partitions { features.drop(partition) }
    }

    /// Reads the partition's `loop.predictions` to its end and remembers the requestIds answered.
    private func restoreAnswered(_ partition: Int32) async {
        var answered: [String] = []
        do {
            let reader = try PartitionReader(
                config: kafka, partitions: [TopicPartition(topic: topics.predictions, partition: partition)], logger: logger)
            reading: for try await event in reader.events(maxRecords: 10_000, maxWait: .milliseconds(5)) {
                switch event {
                case .records(let records):
                    for record in records {
                        guard let value = record.value, let id = try? JSONValue.parse(value)[PayloadField.requestId]?.stringValue
                        else { continue }
                        answered.append(id)
                    }
                case .caughtUp:
                    break reading
                }
            }
            await reader.close()
        } catch {
            logger.error("cannot read loop.predictions; requestIds answered before are not known", metadata: [
                "kafka.partition": "\(partition)", "error.message": "\(error)"])
        }
        deduplicator.open(partition, answered: answered.suffix(deduplicator.capacity))
    }
}

// MARK: - Helpers

/// Hands rebalances of `loop.events` to the pipeline.
struct Rebalancer: RebalanceHandler {
    let pipeline: ScorerPipeline

    func assigned(_ partitions: [TopicPartition]) async -> [TopicPartition: Int64]? {
        await pipeline.assigned(partitions.map(\.partition))
        return nil
    }

    func revoked(_ partitions: [TopicPartition]) async {
        await pipeline.revoked(partitions.map(\.partition))
    }
}

/// The `loop.features` partitions followed and the assignments waiting for theirs to catch up.
struct FeatureCatchUps: Sendable {
    var followed: Set<Int32> = []
    var waiting: [Int32: Signal] = [:]
    /// The reader stopped: nothing more will catch up.
    var ended = false
}

/// What one batch produced, recorded into metrics once the batch is acknowledged.
struct BatchTally: Sendable {
    struct Outcome: Hashable, Sendable {
        var route: Route
        var role: ModelRole
        var version: Int64?
    }

    var requests = 0
    var predictions = 0
    var other = 0
    var invalid = 0
    var duplicates = 0
    var featureWaitTimeouts = 0
    var byOutcome: [Outcome: Int] = [:]
    var reasons: [String: Int] = [:]
    var scores: [Double] = []
    var ages: [Double] = []

    mutating func add(_ prediction: Prediction) {
        predictions += 1
        byOutcome[Outcome(route: prediction.route, role: prediction.role, version: prediction.modelVersion), default: 0] += 1
        for reason in prediction.reasons { reasons[reason, default: 0] += 1 }
        scores.append(prediction.score)
        if let age = prediction.featureAgeSeconds { ages.append(age) }
    }

    /// Adds the predictions counted in `other` (a lane of the same batch).
    mutating func merge(_ other: BatchTally) {
        predictions += other.predictions
        byOutcome.merge(other.byOutcome, uniquingKeysWith: +)
        reasons.merge(other.reasons, uniquingKeysWith: +)
        scores.append(contentsOf: other.scores)
        ages.append(contentsOf: other.ages)
    }
}

/// How many batches are being scored or awaiting acknowledgement, so a revocation can wait until
/// every one of them has marked its offsets.
final class BatchGate: Sendable {
    private struct State {
        var busy = 0
        var abandoned = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    func enter() { state.withLock { $0.busy += 1 } }

    func leave() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.busy -= 1
            guard state.busy <= 0 else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Stops waiting for batches that will never be marked (a send failed): ``idle()`` returns at once.
    func abandon() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.abandoned = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once no batch is in flight.
    func idle() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state in
                if state.busy <= 0 || state.abandoned { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }
}

/// A request to score with the feature state it is scored with.
struct ScoringItem: Sendable {
    var request: ScoreRequest
    var state: EntityFeatureState?
}

/// A score request with where it was read.
struct PendingRequest: Sendable {
    var request: ScoreRequest
    var partition: Int32
    var offset: Int64
}

/// One batch scored and encoded, waiting to be sent and acknowledged.
struct PreparedBatch: Sendable {
    /// The batch's position in the consumer's order.
    let sequence: Int
    /// When the pipeline took the batch from the consumer.
    let received: ContinuousClock.Instant
    var outgoing: [OutgoingRecord] = []
    /// The requestIds answered, to forget if the predictions are not acknowledged.
    var answered: [(id: String, partition: Int32)] = []
    /// The highest `loop.events` offset per partition in the batch.
    var offsets: [Int32: Int64] = [:]
    /// When each request was produced to `loop.events`, for the end-to-end latency.
    var produceTimes: [Date] = []
    var tally = BatchTally()

    init(sequence: Int, received: ContinuousClock.Instant) {
        self.sequence = sequence
        self.received = received
    }
}

/// Runs each batch's completion in the order of the batches, however their acknowledgements
/// arrive: batch `n`'s completion runs once batches `0..<n` have completed, under one lock, so
/// offsets are stored in increasing order.
final class InOrderAcknowledgements: Sendable {
    private struct State {
        var next = 0
        var waiting: [Int: @Sendable () -> Void] = [:]
    }
    private let state = Mutex(State())

    func complete(_ sequence: Int, _ completion: @escaping @Sendable () -> Void) {
        state.withLock { state in
            state.waiting[sequence] = completion
            while let ready = state.waiting.removeValue(forKey: state.next) {
                ready()
                state.next += 1
            }
        }
    }
}

/// Fires once; any number of tasks wait for it.
final class Signal: Sendable {
    private struct State {
        var fired = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.fired else { return [] }
            state.fired = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let fired = state.withLock { state in
                if state.fired { return true }
                state.waiters.append(continuation)
                return false
            }
            if fired { continuation.resume() }
        }
    }
}

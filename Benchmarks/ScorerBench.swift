import Contracts
import Features
import Foundation
import Kafka
import Learning
import Logging
import Prometheus
import Scorer
import ServiceKit
import Synchronization
import TestSupport

// loop-bench scorer: consume → score → produce with a 20-input model against the Kafka
// pass-through (consume → produce, same client, same batches, same number of batches in flight)
// measured in the same run, then request → prediction latency at a paced request rate.
//
// Features come only from observations here (no feature-store runs in the bench), so the scorer
// never waits for the feature-store to apply a request: the latency is the scorer's own hop.
//
//   loop-bench scorer [--requests 200000] [--entities 1000] [--rate 5000] [--seconds 5] [--fetch-wait-ms 5]
//                     [--lanes N] [--brokers host:port]
//
// --lanes is the scorer's `--scorer-lanes` (default: one per core).
// --fetch-wait-ms is `fetch.wait.max.ms` of every consumer and reader in the run (the scorer's
// `--scorer-fetch-wait-ms`): how long the broker may hold a fetch, which bounds each hop's latency.

struct ScorerBenchOptions {
    var requests = 200_000
    var entities = 1_000
    var rate = 5_000
    var seconds = 5
    /// The scorer's default `--scorer-fetch-wait-ms`.
    var fetchWaitMs = ScorerOptions.fetchWaitSetting.spec.defaultText.flatMap { Int($0) } ?? 5
    var lanes = ScorerOptions().lanes
    var brokers: String?

    init(_ arguments: [String]) throws {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            func value() throws -> Int {
                guard let text = iterator.next(), let number = Int(text), number > 0 else {
                    throw BenchError(description: "\(argument) needs a positive number")
                }
                return number
            }
            switch argument {
            case "--requests": requests = try value()
            case "--entities": entities = try value()
            case "--rate": rate = try value()
            case "--seconds": seconds = try value()
            case "--fetch-wait-ms": fetchWaitMs = try value()
            case "--lanes": lanes = try value()
            case "--brokers":
                guard let text = iterator.next() else { throw BenchError(description: "--brokers needs a value") }
                brokers = text
            default: throw BenchError(description: "unknown option \(argument)")
            }
        }
    }
}

/// `loop-bench scorer`.
func runScorerBench(_ arguments: [String]) async throws {
    let options = try ScorerBenchOptions(arguments)
    var logger = Logger(label: "loop-bench")
    logger.logLevel = .error
    var broker: Broker?
    let bootstrap: String
    if let brokers = options.brokers {
        bootstrap = brokers
    } else {
        broker = try await Broker.start()
        bootstrap = broker!.bootstrap
    }
    defer { broker?.stop() }
    var kafka = KafkaConfig(brokers: bootstrap, clientID: "loop-bench-scorer")
    kafka.extra["fetch.wait.max.ms"] = String(options.fetchWaitMs)

    // A deployment: elec2 with two more features, so the model takes 14 features + 6 context fields.
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    let path = root.appendingPathComponent("examples/elec2/loop.yaml").path
    var config = try LoopConfig.parse(yaml: try String(contentsOfFile: path, encoding: .utf8), file: path)
    let prefix = Broker.uniqueTopic("bench-scorer")
    config.topics = TopicSettings(prefix: prefix, partitions: 4, replicationFactor: 1, retention: config.topics.retention)
    let types = config.features.eventTypes
    config.features.definitions += [
        FeatureDefinition(name: "nswdemand_max_24h", field: "nswdemand", aggregation: .max, window: TimeSpan(seconds: 86_400), eventTypes: types),
        FeatureDefinition(name: "vicprice_last", field: "vicprice", aggregation: .last, eventTypes: types),
    ]
    config.model.features = config.features.definitions.map(\.name)
    for index in config.features.definitions.indices { config.features.definitions[index].eventTypes = ["loop.observation.v1"] }
    let topics = config.topics.names
    try await TopicLayout(config: config).ensureTopics(kafka: kafka, logger: logger)
    let passThroughTopic = Broker.uniqueTopic("bench-pass")
    try await KafkaAdmin(config: kafka, logger: logger).createTopics([TopicSpec(name: passThroughTopic, partitions: 4)])
    let producer = try KafkaProducer(config: kafka, logger: logger)

    // Features of every entity, as of t0.
    let schema = try Features.FeatureSchema(settings: config.features)
    let t0: Double = 1_699_992_000
    let entities = (0..<options.entities).map { "region-\($0)" }
    var featureRecords: [OutgoingRecord] = []
    var states: [String: EntityFeatureState] = [:]
    for (index, entity) in entities.enumerated() {
        var state = EntityFeatureState(entityID: entity, schema: schema)
        for step in 0..<8 {
            let x = Double((index * 7 + step * 13) % 100) / 100
            _ = try state.apply(FeatureEvent(time: t0 - Double(7 - step) * 900, type: "loop.observation.v1", values: [
                "nswprice": x, "nswdemand": 1 - x, "vicprice": x * 0.5, "transfer": 0.5,
            ]))
        }
        states[entity] = state
        featureRecords.append(OutgoingRecord(topic: topics.features, key: Array(entity.utf8), value: state.encoded()))
    }
    _ = try await producer.send(featureRecords)

    // A champion trained on the vectors serving will see.
    let layout = try RequestVectorLayout(config: config, featureSchema: schema)
    guard layout.count == 20 else { throw BenchError(description: "the bench model should take 20 inputs, not \(layout.count)") }
    let engine = PredictionEngine(layout: layout, policy: config.decision)
    var columns = [[Double]](repeating: [], count: layout.count)
    var labels: [Bool] = []
    for i in 0..<2_000 {
        let entity = entities[i % entities.count]
        let request = ScoreRequest(
            requestId: "train-\(i)", entity: entity, eventTimeMs: Int64(t0 * 1000) + 60_000,
            context: context(i))
        let vector = engine.predict(request, state: states[entity], models: .baseline).features.map { $0.value ?? 0 }
        for j in 0..<layout.count { columns[j].append(vector[j]) }
        labels.append((vector[layout.names.firstIndex(of: "nswprice")!] + Double(i % 10) / 20) > 0.7)
    }
    let artifact = try LogisticRegression.fit(Dataset(columns: zip(layout.names, columns).map { .numeric($0, $1) }, labels: labels))
    let record = ModelVersionRecord(
        version: 1, status: .champion, parent: nil, trigger: "manual", createdAtMs: 0, reasons: [],
        lineage: .object([:]), artifact: try JSONValue.parse(Array(artifact.jsonData())), card: "")
    _ = try await producer.send([
        OutgoingRecord(topic: topics.models, key: Array(ModelVersionRecord.key(version: 1).utf8), value: record.bytes, partition: 0),
        OutgoingRecord(
            topic: topics.models, key: Array(RegistryState.key.utf8),
            value: RegistryState(champion: 1, canary: nil, canaryShare: 0, shadows: [], history: [], revision: 1).bytes, partition: 0),
    ])

    // The requests.
    let count = options.requests
    try stageTimings(config: config, layout: layout, states: states, entities: entities, artifact: artifact, t0: t0)
    var requests: [OutgoingRecord] = []
    requests.reserveCapacity(count)
    for i in 0..<count {
        requests.append(requestRecord(topic: topics.events, entity: entities[i % entities.count], id: "r\(i)", timeMs: Int64(t0 * 1000) + 60_000 + Int64(i)))
    }
    for chunk in stride(from: 0, to: count, by: 50_000) {
        _ = try await producer.send(Array(requests[chunk..<min(count, chunk + 50_000)]))
    }
    print("scorer bench: \(count) requests, \(entities.count) entities, 4 partitions, 20-input model, \(options.lanes) lanes, broker \(bootstrap)")

    // Pass-through: the same consumer group client and batches, producing each record unchanged,
    // with as many batches in flight as the scorer.
    var scorerOptions = ScorerOptions()
    let passConsumer = try KafkaConsumer(config: kafka, groupID: Broker.uniqueTopic("bench-pass-group"), logger: logger)
    try passConsumer.subscribe(topics: [topics.events])
    var moved = 0
    var passStart: ContinuousClock.Instant?
    var passCPU = CPUShares(broker: broker)
    try await withThrowingTaskGroup(of: Void.self) { group in
        var inFlight = 0
        for try await batch in passConsumer.batches(maxRecords: scorerOptions.maxBatch, maxWait: scorerOptions.maxBatchWait) {
            if passStart == nil { passStart = .now }
            let outgoing = batch.map { OutgoingRecord(topic: passThroughTopic, key: $0.key, value: $0.value, headers: $0.headers) }
            if inFlight >= scorerOptions.maxInFlight {
                try await group.next()
                inFlight -= 1
            }
            group.addTask { _ = try await producer.send(outgoing) }
            inFlight += 1
            moved += batch.count
            if moved >= count { break }
        }
        try await group.waitForAll()
    }
    let passSeconds = seconds(ContinuousClock.now - passStart!)
    passCPU.stop()
    await passConsumer.close()
    let passRate = Double(count) / passSeconds

    // The scorer.
    scorerOptions.groupID = Broker.uniqueTopic("bench-scorer-group")
    scorerOptions.lanes = options.lanes
    let pipeline = try ScorerPipeline(
        config: config, options: scorerOptions, kafka: kafka, metrics: PrometheusCollectorRegistry(), logger: logger)
    let running = Task { try await pipeline.run() }
    while pipeline.statistics.requests == 0 { try await Task.sleep(for: .milliseconds(1)) }
    let scoreStart = ContinuousClock.now
    var scoreCPU = CPUShares(broker: broker)
    let firstBatch = pipeline.statistics.requests
    while pipeline.statistics.predictions < count { try await Task.sleep(for: .milliseconds(1)) }
    let scoreRate = Double(count - firstBatch) / seconds(ContinuousClock.now - scoreStart)
    scoreCPU.stop()
    let throughputStages = pipeline.statistics.stages.snapshot
    let throughputLoad = loadAverage()

    // Latency at a paced rate: send time → prediction read back from loop.predictions.
    let sent = Mutex<[String: ContinuousClock.Instant]>([:])
    let latencies = Mutex<[Double]>([])
    let total = options.rate * options.seconds
    let admin = try KafkaAdmin(config: kafka, logger: logger)
    var ends: [TopicPartition: Int64] = [:]
    for partition in Int32(0)..<4 {
        ends[TopicPartition(topic: topics.predictions, partition: partition)] = try await admin.watermarks(topic: topics.predictions, partition: partition).high
    }
    let reader = try PartitionReader(config: kafka, partitions: Array(ends.keys), offsets: ends, logger: logger)
    let watcher = Task {
        for try await event in reader.events(maxRecords: 10_000, maxWait: .milliseconds(1)) {
            guard case .records(let records) = event else { continue }
            let now = ContinuousClock.now
            for record in records {
                guard let value = record.value, let id = try JSONValue.parse(value)["requestId"]?.stringValue,
                      let start = sent.withLock({ $0[id] }) else { continue }
                latencies.withLock { $0.append(seconds(now - start) * 1000) }
            }
            if latencies.withLock({ $0.count }) >= total { break }
        }
    }
    var latencyProducerSettings = ProducerSettings()
    latencyProducerSettings.linger = .milliseconds(0)
    let pacedProducer = try KafkaProducer(config: kafka, producer: latencyProducerSettings, logger: logger)
    let tick = Duration.milliseconds(2)
    let perTick = max(1, options.rate * 2 / 1000)
    let begin = ContinuousClock.now
    var next = 0
    var tickIndex = 0
    try await withThrowingTaskGroup(of: Void.self) { group in
        while next < total {
            tickIndex += 1
            let due = begin + tick * tickIndex
            try await Task.sleep(until: due, clock: .continuous)
            let batch = (next..<min(total, next + perTick)).map { i in
                requestRecord(topic: topics.events, entity: entities[i % entities.count], id: "paced-\(i)", timeMs: Int64(t0 * 1000) + 120_000 + Int64(i))
            }
            let now = ContinuousClock.now
            sent.withLock { map in for i in next..<next + batch.count { map["paced-\(i)"] = now } }
            next += batch.count
            group.addTask { _ = try await pacedProducer.send(batch) }
        }
        try await group.waitForAll()
    }
    let deadline = ContinuousClock.now + .seconds(30)
    while latencies.withLock({ $0.count }) < total && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
    let latencyStages = pipeline.statistics.stages.snapshot
    let latencyLoad = loadAverage()
    watcher.cancel()
    await reader.close()
    // The scorer with no requests: what its consumer and readers cost while they only poll.
    var idleCPU = CPUShares(broker: broker)
    let idleStart = ContinuousClock.now
    try await Task.sleep(for: .seconds(2))
    idleCPU.stop()
    let idleSeconds = seconds(ContinuousClock.now - idleStart)
    await pipeline.stop()
    try await running.value

    let floor = try await oneHopLatency(kafka: kafka, topic: passThroughTopic, rate: options.rate, seconds: options.seconds, logger: logger)
    let relay = try await relayLatency(kafka: kafka, rate: options.rate, seconds: options.seconds, logger: logger)

    let sorted = latencies.withLock { $0 }.sorted()
    guard !sorted.isEmpty else { throw BenchError(description: "no paced prediction was read back") }
    func percentile(_ q: Double) -> Double { sorted[min(sorted.count - 1, Int(q * Double(sorted.count - 1)))] }
    print("")
    print(pad("kafka pass-through", 30) + String(format: "%10.0f msg/s", passRate))
    print(pad("scorer consume→score→produce", 30) + String(format: "%10.0f req/s  (%.0f%% of pass-through)", scoreRate, 100 * scoreRate / passRate))
    print(pad("latency at \(options.rate) req/s", 30) + String(format: "p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d of %d requests",
                                                               percentile(0.5), percentile(0.99), sorted.last!, sorted.count, total))
    print(pad("kafka one hop at \(options.rate)/s", 30) + String(format: "p50 %.2f ms, p99 %.2f ms (produce → read back; the scorer path is two hops)",
                                                               floor.p50, floor.p99))
    print(pad("kafka relay at \(options.rate)/s", 30) + String(format: "p50 %.2f ms, p99 %.2f ms (the scorer's path without scoring: its consumer and producer settings, records copied)",
                                                               relay.p50, relay.p99))
    print("CPU µs/record, pass-through:          " + passCPU.line(records: count))
    print("CPU µs/record, scorer:                " + scoreCPU.line(records: count - firstBatch))
    print("CPU ms/s, scorer idle:                " + idleCPU.line(perSecond: idleSeconds))
    print("")
    print("stages, throughput run (µs/request):  " + stageLine(throughputStages, requests: count) + "   load " + throughputLoad)
    print("stages, paced run (ms/batch):         " + batchLine(since: throughputStages, latencyStages) + "   load " + latencyLoad)
}

/// CPU time of this process and of the bench's own broker over one phase: with both cores busy, a
/// phase's rate is bounded by 2 cores / (ours + broker) µs per record.
private struct CPUShares {
    let brokerPID: Int32?
    var process = -processCPUSeconds()
    var broker: Double

    init(broker: Broker?) {
        brokerPID = broker?.pid
        self.broker = -(brokerPID.map(Self.cpuSeconds(pid:)) ?? 0)
    }

    mutating func stop() {
        process += processCPUSeconds()
        broker += brokerPID.map(Self.cpuSeconds(pid:)) ?? 0
    }

    func line(records: Int) -> String {
        let n = Double(max(1, records))
        guard brokerPID != nil else { return String(format: "this process %.2f (broker not ours)", process * 1e6 / n) }
        return String(format: "this process %.2f, broker %.2f, sum %.2f", process * 1e6 / n, broker * 1e6 / n, (process + broker) * 1e6 / n)
    }

    func line(perSecond seconds: Double) -> String {
        guard brokerPID != nil else { return String(format: "this process %.1f (broker not ours)", process * 1e3 / seconds) }
        return String(format: "this process %.1f, broker %.1f", process * 1e3 / seconds, broker * 1e3 / seconds)
    }

    /// User plus system time of another process, from `/proc/<pid>/stat` (in clock ticks).
    static func cpuSeconds(pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime and stime are fields 14 and 15.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

private func stageLine(_ stages: StageTimes.Snapshot, requests: Int) -> String {
    func perRequest(_ duration: Duration) -> Double { seconds(duration) * 1e6 / Double(max(1, requests)) }
    return String(format: "decode %.2f, feature wait %.2f, score+encode %.2f, enqueue %.2f; batches %d (%.0f req/batch), send→ack %.2f ms/batch",
                  perRequest(stages.decode), perRequest(stages.featureWait), perRequest(stages.score), perRequest(stages.enqueue), stages.batches,
                  Double(requests) / Double(max(1, stages.batches)),
                  seconds(stages.acknowledgement) * 1000 / Double(max(1, stages.acknowledgedBatches)))
}

private func batchLine(since before: StageTimes.Snapshot, _ after: StageTimes.Snapshot) -> String {
    let batches = max(1, after.batches - before.batches)
    func perBatch(_ a: Duration, _ b: Duration) -> Double { seconds(b - a) * 1000 / Double(batches) }
    return String(format: "%d batches; decode %.3f, feature wait %.3f, score+encode %.3f, send→ack %.3f",
                  after.batches - before.batches, perBatch(before.decode, after.decode), perBatch(before.featureWait, after.featureWait),
                  perBatch(before.score, after.score),
                  seconds(after.acknowledgement - before.acknowledgement) * 1000 / Double(max(1, after.acknowledgedBatches - before.acknowledgedBatches)))
}

private func context(_ i: Int) -> JSONObject {
    let x = Double(i % 100) / 100
    return JSONObject([
        ("requestId", .string("r\(i)")), ("period", .double(Double(i % 48) / 48)), ("nswprice", .double(x)),
        ("nswdemand", .double(1 - x)), ("vicprice", .double(x * 0.5)), ("vicdemand", .double(0.4)), ("transfer", .double(0.5)),
    ])
}

private func requestRecord(topic: String, entity: String, id: String, timeMs: Int64) -> OutgoingRecord {
    var data = context(Int(timeMs % 1000))
    data.removeValue(forKey: "requestId")
    let event = CloudEvent(
        id: id, source: "bench", type: "loop.score_request.v1", subject: entity,
        time: Timestamp(seconds: timeMs / 1000, nanoseconds: Int32(timeMs % 1000) * 1_000_000),
        dataContentType: "application/json",
        data: .json(.object(JSONObject([("requestId", .string(id))] + data.members.map { ($0.key, $0.value) }))))
    let message = KafkaBinding.encode(event, mode: .binary, key: .subject)
    return OutgoingRecord(topic: topic, key: message.key, value: message.value, headers: message.headers.map { KafkaHeader(key: $0.name, value: $0.value) })
}

/// The cost of each in-process stage per request, without Kafka.
private func stageTimings(
    config: LoopConfig, layout: RequestVectorLayout, states: [String: EntityFeatureState], entities: [String],
    artifact: ModelArtifact, t0: Double
) throws {
    let n = 50_000
    let records = (0..<n).map { i in
        let outgoing = requestRecord(topic: "t", entity: entities[i % entities.count], id: "s\(i)", timeMs: Int64(t0 * 1000) + 60_000 + Int64(i))
        return ConsumedRecord(topic: "t", partition: 0, offset: Int64(i), key: outgoing.key, value: outgoing.value, headers: outgoing.headers)
    }
    let models = ServingModels(
        revision: 1, champion: try ServingModel(version: 1, artifact: artifact, layout: layout), canary: nil, canaryShare: 0, shadows: [])
    let engine = PredictionEngine(layout: layout, policy: config.decision)
    var writer = PredictionWriter()
    var requests: [ScoreRequest] = []
    requests.reserveCapacity(n)
    var parser = JSONParser()
    let decode = measureStage(n) {
        for record in records where ScoreRequest.isScoreRequest(record) { requests.append(try! ScoreRequest(record: record, parser: &parser)) }
    }
    let evaluate = measureStage(n) { for request in requests { _ = try? states[request.entity]!.evaluate(asOf: Double(request.eventTimeMs) / 1000) } }
    var predictions: [Prediction] = []
    predictions.reserveCapacity(n)
    let predict = measureStage(n) { for request in requests { predictions.append(engine.predict(request, state: states[request.entity], models: models)) } }
    var bytes = 0
    let write = measureStage(n) { for prediction in predictions { bytes += writer.write(prediction).count } }
    let canonical = measureStage(n) { for prediction in predictions.prefix(n / 10) { bytes += prediction.bytes.count } } * 10
    print(String(format: "in-process CPU µs/request: decode %.2f, evaluate %.2f, predict (incl. evaluate) %.2f, fast write %.2f (JSONValue tree %.2f)",
                 decode, evaluate, predict, write, canonical))
}

/// CPU time of this thread per item, in µs: unlike wall time it does not grow with the machine's load.
private func measureStage(_ n: Int, _ body: () -> Void) -> Double {
    let start = threadCPUSeconds()
    body()
    return (threadCPUSeconds() - start) * 1e6 / Double(n)
}

/// The Kafka floor of the scorer's path: records produced at `rate` to one topic, consumed in a group
/// with the scorer's batch settings and produced unchanged, with the scorer's producer settings, to a
/// second topic, read back from there; p50 and p99 in milliseconds.
private func relayLatency(kafka: KafkaConfig, rate: Int, seconds: Int, logger: Logger) async throws -> (p50: Double, p99: Double) {
    let input = Broker.uniqueTopic("bench-relay-in")
    let output = Broker.uniqueTopic("bench-relay-out")
    try await KafkaAdmin(config: kafka, logger: logger).createTopics([
        TopicSpec(name: input, partitions: 4), TopicSpec(name: output, partitions: 4)])
    let settings = ScorerOptions()
    let consumer = try KafkaConsumer(config: kafka, groupID: Broker.uniqueTopic("bench-relay"), logger: logger)
    try consumer.subscribe(topics: [input])
    let relayProducer = try KafkaProducer(config: kafka, producer: settings.producer, logger: logger)
    let relay = Task {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for try await batch in consumer.batches(maxRecords: settings.maxBatch, maxWait: settings.maxBatchWait) {
                let outgoing = batch.map { OutgoingRecord(topic: output, key: $0.key, value: $0.value, headers: $0.headers) }
                if inFlight >= settings.maxInFlight {
                    try await group.next()
                    inFlight -= 1
                }
                group.addTask { _ = try await relayProducer.send(outgoing) }
                inFlight += 1
                consumer.markProcessed(batch)
            }
            try await group.waitForAll()
        }
    }
    // Joining the group takes a moment; the measurement starts once a first record went through.
    let probe = try KafkaProducer(config: kafka, logger: logger)
    let admin = try KafkaAdmin(config: kafka, logger: logger)
    func relayed() async throws -> Bool {
        for partition in Int32(0)..<4 {
            if try await admin.watermarks(topic: output, partition: partition).high > 0 { return true }
        }
        return false
    }
    while try await !relayed() {
        _ = try await probe.send([OutgoingRecord(topic: input, key: Array("warm-up".utf8), value: [1])])
        try await Task.sleep(for: .milliseconds(200))
    }
    defer { relay.cancel() }
    let result = try await oneHopLatency(kafka: kafka, topic: input, readFrom: output, rate: rate, seconds: seconds, logger: logger)
    await consumer.close()
    return result
}

/// The Kafka floor of the latency: records produced at `rate` with the paced producer's settings and
/// read back by a reader with the scorer's fetch settings, p50 and p99 in milliseconds.
private func oneHopLatency(
    kafka: KafkaConfig, topic: String, readFrom readTopic: String? = nil, rate: Int, seconds: Int, logger: Logger
) async throws -> (p50: Double, p99: Double) {
    let admin = try KafkaAdmin(config: kafka, logger: logger)
    let readTopic = readTopic ?? topic
    var ends: [TopicPartition: Int64] = [:]
    for partition in Int32(0)..<4 {
        ends[TopicPartition(topic: readTopic, partition: partition)] = try await admin.watermarks(topic: readTopic, partition: partition).high
    }
    let reader = try PartitionReader(config: kafka, partitions: Array(ends.keys), offsets: ends, logger: logger)
    let sent = Mutex<[String: ContinuousClock.Instant]>([:])
    let latencies = Mutex<[Double]>([])
    let total = rate * seconds
    let watcher = Task {
        for try await event in reader.events(maxRecords: 10_000, maxWait: .milliseconds(1)) {
            guard case .records(let records) = event else { continue }
            let now = ContinuousClock.now
            for record in records {
                guard let key = record.key, let start = sent.withLock({ $0[String(decoding: key, as: UTF8.self)] }) else { continue }
                latencies.withLock { $0.append(Double((now - start).components.attoseconds) / 1e15 + Double((now - start).components.seconds) * 1000) }
            }
            if latencies.withLock({ $0.count }) >= total { break }
        }
    }
    var settings = ProducerSettings()
    settings.linger = .milliseconds(0)
    let producer = try KafkaProducer(config: kafka, producer: settings, logger: logger)
    let perTick = max(1, rate * 2 / 1000)
    let begin = ContinuousClock.now
    var next = 0
    var tick = 0
    try await withThrowingTaskGroup(of: Void.self) { group in
        while next < total {
            tick += 1
            try await Task.sleep(until: begin + .milliseconds(2) * tick, clock: .continuous)
            let batch = (next..<min(total, next + perTick)).map { OutgoingRecord(topic: topic, key: Array("hop-\($0)".utf8), value: Array(repeating: 7, count: 200)) }
            let now = ContinuousClock.now
            sent.withLock { map in for i in next..<next + batch.count { map["hop-\(i)"] = now } }
            next += batch.count
            group.addTask { _ = try await producer.send(batch) }
        }
        try await group.waitForAll()
    }
    let deadline = ContinuousClock.now + .seconds(20)
    while latencies.withLock({ $0.count }) < total && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
    watcher.cancel()
    await reader.close()
    let sorted = latencies.withLock { $0 }.sorted()
    guard !sorted.isEmpty else { return (.nan, .nan) }
    return (sorted[sorted.count / 2], sorted[min(sorted.count - 1, Int(0.99 * Double(sorted.count - 1)))])
}

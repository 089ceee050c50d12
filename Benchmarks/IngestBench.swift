#if canImport(Glibc)
import Glibc
#endif
import Contracts
import Dispatch
import Foundation
import Ingest
import Kafka
import Logging
import Prometheus
import ServiceKit
import ServiceLifecycle
import TestSupport

// loop-bench ingest: events/s of the ingest service against a local Tansu.
//
//   loop-bench ingest [--events 300000] [--http-events 200000] [--connections 4] [--ceiling-events 200000]
//                     [--brokers host:port]
//
// raw → loop.events: raw binary-mode events are produced first, then the service consumes,
// validates, dedupes, redacts and writes them; the rate is measured between 5% and 100% written.
// HTTP batch: `POST /v1/events` with batches of 500 structured events over keep-alive connections.
// Broker ceilings: the same events in other shapes (no headers, structured mode, the 9-header
// records ingest writes) produced and passed through the same way, to separate the broker's cost
// per header and per byte from ingest's own work.

struct IngestBenchOptions {
    var events = 300_000
    var httpEvents = 200_000
    var connections = 4
    var brokers: String?
    /// Records per shape for the broker ceilings (0 skips them).
    var ceilingEvents = 200_000

    init(_ arguments: [String]) throws {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            guard let value = iterator.next() else { throw BenchError(description: "\(argument) needs a value") }
            switch argument {
            case "--events": events = Int(value) ?? events
            case "--http-events": httpEvents = Int(value) ?? httpEvents
            case "--connections": connections = Int(value) ?? connections
            case "--brokers": brokers = value
            case "--ceiling-events": ceilingEvents = Int(value) ?? ceilingEvents
            default: throw BenchError(description: "unknown option \(argument)")
            }
        }
    }
}

func runIngestBench(_ arguments: [String]) async throws {
    let options = try IngestBenchOptions(arguments)
    var logger = Logger(label: "loop-bench")
    logger.logLevel = .warning
    var broker: Broker?
    let bootstrap: String
    if let brokers = options.brokers {
        bootstrap = brokers
    } else {
        broker = try await Broker.start()
        bootstrap = broker!.bootstrap
    }
    defer { broker?.stop() }

    let prefix = Broker.uniqueTopic("bench")
    let directory = NSTemporaryDirectory() + prefix
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let yaml = try String(contentsOfFile: "examples/elec2/loop.yaml", encoding: .utf8)
        .replacingOccurrences(of: "prefix: loop ", with: "prefix: \(prefix) ")
    let config = try LoopConfig.parse(yaml: yaml, file: "loop.yaml")
    let names = config.topics.names
    let kafka = KafkaConfig(brokers: bootstrap, clientID: "loop-bench")
    try await TopicLayout(config: config).ensureTopics(kafka: kafka, logger: logger)

    // Raw events, produced before the service starts.
    let producer = try KafkaProducer(config: kafka, logger: logger)
    let raw = (0..<options.events).map { index -> OutgoingRecord in
        let data: JSONValue = ["dow": 3, "period": 0.25, "nswprice": .double(Double(index % 1000) / 1000), "nswdemand": 0.4,
                               "vicprice": 0.1, "transfer": 0.5, "operator": .string("op-\(index % 50)")]
        return OutgoingRecord(
            topic: names.rawEvents, key: Array("entity-\(index % 1000)".utf8), value: data.canonicalBytes(),
            headers: [KafkaHeader(key: "ce_specversion", string: "1.0"), KafkaHeader(key: "ce_id", string: "raw-\(index)"),
                      KafkaHeader(key: "ce_source", string: "/bench"), KafkaHeader(key: "ce_type", string: "loop.observation.v1"),
                      KafkaHeader(key: "ce_subject", string: "entity-\(index % 1000)"),
                      KafkaHeader(key: "ce_time", string: "2024-05-01T10:00:00Z"),
                      KafkaHeader(key: "content-type", string: "application/json")])
    }
    let produced = try await measure(options.events) { _ = try await producer.send(raw) }
    print("produced \(options.events) raw events to \(names.rawEvents): \(Int(produced.rate)) records/s")

    // Baseline: a plain consumer group reading the same records, no processing.
    let baseline = try await measure(options.events) {
        var consumerSettings = ConsumerSettings()
        consumerSettings.bufferedBatches = 2
        let consumer = try KafkaConsumer(config: kafka, groupID: prefix + "-baseline", consumer: consumerSettings, logger: logger)
        try consumer.subscribe(topics: [names.rawEvents])
        var seen = 0
        var started = false
        for try await batch in consumer.batches(maxRecords: 5000, maxWait: .milliseconds(20)) {
            if !started { started = true }
            seen += batch.count
            if seen >= options.events { break }
        }
        await consumer.close()
    }
    print("baseline consumer group read (incl. join): \(Int(baseline.rate)) records/s in \(String(format: "%.2f", baseline.seconds)) s")

    // Pass-through: the same records consumed and produced unchanged to another topic, batches
    // pipelined like ingest's writer; the ceiling ingest is compared with.
    var sample: [ConsumedRecord] = []
    let passThroughCPUStart = processCPUSeconds()
    let passThrough = try await passThroughRate(
        topic: names.rawEvents, count: options.events, kafka: kafka, config: config, producer: producer, logger: logger, sample: &sample)
    let passThroughCPU = processCPUSeconds() - passThroughCPUStart
    print("pass-through consume → produce (pipelined, from the first batch): \(Int(passThrough)) records/s")
    print(String(format: "pass-through: process CPU %.2f µs/record (the Kafka client's share of any consume → produce, group join included)",
                 passThroughCPU * 1e6 / Double(options.events)))

    // Stage costs, in process on the sampled raw records.
    let intake = Intake(validator: try EventValidator(config: config, piiKey: Array("bench-key".utf8)), deadLetterTopic: names.deadLetters)
    let validateSeconds = time { _ = intake.items(from: sample) }
    var plain = config
    plain.fields = plain.fields.mapValues { spec in
        var spec = spec
        spec.pii = .none
        return spec
    }
    let plainIntake = Intake(validator: try EventValidator(config: plain, piiKey: nil), deadLetterTopic: names.deadLetters)
    let plainSeconds = time { _ = plainIntake.items(from: sample) }
    let generalSeconds = time {
        for record in sample {
            _ = try? KafkaBinding.decode(KafkaBinding.Message(
                key: record.key, value: record.value, headers: record.headers.map { KafkaBinding.Header(name: $0.key, value: $0.value) }))
        }
    }
    let perEvent = { (seconds: Double) in String(format: "%.2f µs/event", seconds * 1e6 / Double(max(1, sample.count))) }
    print("stage (thread CPU): decode+validate+redact (fast path, 1 PII hash/event): \(perEvent(validateSeconds))")
    print("stage: decode+validate without PII: \(perEvent(plainSeconds)) (so the keyed hash ≈ \(perEvent(validateSeconds - plainSeconds)))")
    print("stage: KafkaBinding.decode alone (the general path's first step): \(perEvent(generalSeconds))")

    // Broker ceilings: the same events with fewer headers, in structured mode, and in the shape
    // ingest writes (what the sample's fast path produces), produced, then passed through.
    var ceilings: [(name: String, produced: Double, passed: Double)] = []
    if options.ceilingEvents > 0 {
        let count = options.ceilingEvents
        let written = intake.items(from: Array(sample.prefix(1000))).compactMap { item -> OutgoingRecord? in
            if case .event(let event) = item { return event.record }
            return nil
        }
        let shapes: [(String, (Int) -> OutgoingRecord)] = [
            ("binary, 7 headers (the raw input)", { index in
                let record = raw[index % raw.count]
                return OutgoingRecord(topic: "", key: record.key, value: record.value, headers: record.headers)
            }),
            ("binary, no headers", { index in
                let record = raw[index % raw.count]
                return OutgoingRecord(topic: "", key: record.key, value: record.value)
            }),
            ("structured, 1 header", { index in
                let record = raw[index % raw.count]
                let event = CloudEvent(
                    id: "s-\(index)", source: "/bench", type: "loop.observation.v1", subject: String(decoding: record.key ?? [], as: UTF8.self),
                    time: Timestamp(seconds: 1_714_557_600), data: .json((try? JSONValue.parse(record.value ?? [])) ?? .null))
                return OutgoingRecord(
                    topic: "", key: record.key, value: JSONFormat.encode(event),
                    headers: [KafkaHeader(key: "content-type", string: JSONFormat.mediaType)])
            }),
            ("binary, 9 headers (what ingest writes)", { index in written[index % written.count] }),
        ]
        for (number, (name, make)) in shapes.enumerated() {
            let topic = names.rawEvents + ".shape\(number)"
            _ = try await KafkaAdmin(config: kafka, logger: logger).createTopics([TopicSpec(
                name: topic, partitions: Int32(config.topics.partitions), replicationFactor: Int16(config.topics.replicationFactor))])
            let records = (0..<count).map { index in
                var record = make(index)
                record.topic = topic
                return record
            }
            let bytes = records.reduce(0) { total, record in
                total + (record.value?.count ?? 0) + record.headers.reduce(0) { $0 + $1.key.utf8.count + ($1.value?.count ?? 0) }
            }
            let produced = try await measure(count) { _ = try await producer.send(records) }
            var ignored: [ConsumedRecord] = []
            let passed = try await passThroughRate(
                topic: topic, count: count, kafka: kafka, config: config, producer: producer, logger: logger, sample: &ignored)
            ceilings.append((name, produced.rate, passed))
            print("ceiling \(name): \(bytes / count) value+header bytes/record, produce \(Int(produced.rate))/s, pass-through \(Int(passed))/s")
        }
    }

    let key = APIKeys.generate(name: "bench", roles: [.producer])
    let common = CommonSettings(service: IngestService.name, defaultAdminPort: 0)
    guard case .run(let settings) = try Settings.parse(
        common.all + IngestService.settings,
        arguments: ["--brokers", bootstrap, "--state-dir", directory, "--pii-key", "bench-key", "--group", prefix],
        environment: [:])
    else { throw BenchError(description: "settings did not parse") }
    let environment = ServiceEnvironment(
        name: IngestService.name, settings: settings, common: common, config: config, logger: logger,
        apiKeys: try APIKeys(parsing: key.hashLine, origin: "bench"))
    let service = try await IngestService(environment: environment)
    let admin = AdminServer(router: environment.router, host: "127.0.0.1", port: 0, logger: logger)
    let group = ServiceGroup(configuration: .init(services: [.init(service: admin), .init(service: service)], logger: logger))
    let running = Task { try await group.run() }

    // Progress is read from ingest's own outcome counters, which count an event only once it is
    // acknowledged by the broker and persisted: polling the broker's watermarks lagged the real
    // progress by up to 2 s on Tansu.
    func written() -> Int {
        let text = String(decoding: environment.metrics.emitToBuffer(), as: UTF8.self)
        return ["loop_ingest_events_accepted_total", "loop_ingest_events_duplicate_total", "loop_ingest_events_rejected_total"]
            .reduce(0) { $0 + Int(counterSum(text, $1)) }
    }
    let startAt = options.events / 20
    var first = 0
    while true {
        first = written()
        if first >= startAt { break }
        try await Task.sleep(for: .milliseconds(10))
    }
    let rawStart = monotonicSeconds()
    let rawCPUStart = processCPUSeconds()
    // Where the pipeline waits: events the writer holds (validated, not yet acknowledged and
    // persisted) and records in the producer's queue, sampled while the raw phase runs. Near the
    // in-flight bound, the broker is the limit; near zero, consuming and validating are.
    let sampling = Task { [metrics = environment.metrics] in
        var samples: (held: [Double], queued: [Double]) = ([], [])
        while !Task.isCancelled {
            let text = String(decoding: metrics.emitToBuffer(), as: UTF8.self)
            samples.held.append(gauge(text, "loop_ingest_queue_depth_events"))
            samples.queued.append(gauge(text, "loop_ingest_producer_queue_records"))
            try? await Task.sleep(for: .milliseconds(10))
        }
        return samples
    }
    let rawRun = try await measure(options.events - first) {
        while written() < options.events { try await Task.sleep(for: .milliseconds(2)) }
    }
    sampling.cancel()
    let (held, queued) = await sampling.value
    let rawCPU = processCPUSeconds() - rawCPUStart
    print(String(format: "phase raw → loop.events: CLOCK_MONOTONIC %.3f,%.3f (perf record -k CLOCK_MONOTONIC; perf report --time)", rawStart, monotonicSeconds()))
    print("raw → loop.events: \(Int(rawRun.rate)) events/s (\(rawRun.records) events in \(String(format: "%.2f", rawRun.seconds)) s)")
    func spread(_ values: [Double]) -> String {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return "no samples" }
        return String(format: "mean %.0f, p10 %.0f, p50 %.0f, p90 %.0f", sorted.reduce(0, +) / Double(sorted.count),
                      sorted[sorted.count / 10], sorted[sorted.count / 2], sorted[sorted.count * 9 / 10])
    }
    print("raw → loop.events: events held by the writer (\(held.count) samples): \(spread(held)); producer queue: \(spread(queued))")
    print(String(format: "raw → loop.events: process CPU %.2f µs/event (every thread of ours, librdkafka's included; Tansu is another process), %.2f cores busy",
                 rawCPU * 1e6 / Double(max(1, rawRun.records)), rawCPU / rawRun.seconds))

    // HTTP batches of 500.
    guard let port = await admin.boundPort() else { throw BenchError(description: "the HTTP server did not start") }
    let batchSize = 500
    let batches = options.httpEvents / batchSize
    let bodies: [[UInt8]] = (0..<batches).map { batch in
        let events = (0..<batchSize).map { index -> CloudEvent in
            let number = batch * batchSize + index
            return CloudEvent(
                id: "http-\(number)", source: "/bench-http", type: "loop.observation.v1", subject: "entity-\(number % 1000)",
                time: Timestamp(seconds: 1_714_557_600),
                data: .json(["dow": 3, "period": 0.25, "nswprice": .double(Double(number % 1000) / 1000), "nswdemand": 0.4]))
        }
        return JSONFormat.encodeBatch(events)
    }
    let stageBodies = Array(bodies.prefix(40))
    let httpStageSeconds = time {
        for body in stageBodies {
            _ = intake.items(httpHeaders: [(name: "Content-Type", value: JSONFormat.batchMediaType)], body: body, peer: nil, maxBatch: 1000)
        }
    }
    print(String(format: "stage: HTTP batch decode+validate (in process, thread CPU): %.2f µs/event", httpStageSeconds * 1e6 / Double(max(1, stageBodies.count * batchSize))))
    let before = written()
    let httpStart = monotonicSeconds()
    let httpRun = try await measure(batches * batchSize) {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for connection in 0..<options.connections {
                let mine = stride(from: connection, to: batches, by: options.connections).map { bodies[$0] }
                tasks.addTask { try await BenchHTTP.post(port: port, key: key.key, bodies: mine) }
            }
            try await tasks.waitForAll()
        }
    }
    let after = written()
    print(String(format: "phase HTTP batch: CLOCK_MONOTONIC %.3f,%.3f", httpStart, monotonicSeconds()))
    guard after - before == batches * batchSize else {
        throw BenchError(description: "HTTP wrote \(after - before) events, expected \(batches * batchSize)")
    }
    print("HTTP batch (500/request, \(options.connections) connections): \(Int(httpRun.rate)) events/s")

    await group.triggerGracefulShutdown()
    try await running.value
    print("")
    print("ingest throughput, broker \(bootstrap), load average \(loadAverage())")
    print(pad("pass-through", 22) + pad("\(Int(passThrough)) records/s", 20))
    print(pad("raw → loop.events", 22) + pad("\(Int(rawRun.rate)) events/s", 20)
        + pad(String(format: "%.2fx pass-through", rawRun.rate / passThrough), 22) + "target 150000")
    print(pad("HTTP batch of 500", 22) + pad("\(Int(httpRun.rate)) events/s", 20)
        + pad(String(format: "%.2fx pass-through", httpRun.rate / passThrough), 22) + "target 50000")
    for ceiling in ceilings {
        print(pad("ceiling", 22) + pad("\(Int(ceiling.passed)) records/s", 20)
            + pad(String(format: "%.2fx pass-through", ceiling.passed / passThrough), 22)
            + "pass-through of \(ceiling.name); produce alone \(Int(ceiling.produced))/s")
    }
}

/// Records/s of a consumer group reading `count` records of `topic` and producing them unchanged to
/// `<topic>.passthrough`, batches pipelined like ingest's writer (4 in flight), timed from the first
/// batch (the group join is not counted, as it is not in ingest's rate). Keeps up to 50,000
/// consumed records in `sample`.
private func passThroughRate(
    topic: String, count: Int, kafka: KafkaConfig, config: LoopConfig, producer: KafkaProducer, logger: Logger,
    sample: inout [ConsumedRecord]
) async throws -> Double {
    let output = topic + ".passthrough"
    _ = try await KafkaAdmin(config: kafka, logger: logger).createTopics([TopicSpec(
        name: output, partitions: Int32(config.topics.partitions), replicationFactor: Int16(config.topics.replicationFactor))])
    var consumerSettings = ConsumerSettings()
    consumerSettings.bufferedBatches = 2
    let consumer = try KafkaConsumer(config: kafka, groupID: output, consumer: consumerSettings, logger: logger)
    try consumer.subscribe(topics: [topic])
    var seen = 0
    var first: (at: ContinuousClock.Instant, count: Int)?
    var inFlight: [KafkaProducer.PendingDelivery] = []
    for try await batch in consumer.batches(maxRecords: 5000, maxWait: .milliseconds(20)) {
        if first == nil { first = (ContinuousClock.now, batch.count) }
        if sample.count < 50_000 { sample += batch }
        let records = batch.map { OutgoingRecord(topic: output, key: $0.key, value: $0.value, headers: $0.headers) }
        inFlight.append(await producer.enqueue(records))
        if inFlight.count >= 4 { _ = try await inFlight.removeFirst().reports() }
        seen += batch.count
        if seen >= count { break }
    }
    for pending in inFlight { _ = try await pending.reports() }
    let end = ContinuousClock.now
    await consumer.close()
    guard let first else { return 0 }
    let (seconds, attoseconds) = (end - first.at).components
    return Double(seen - first.count) / (Double(seconds) + Double(attoseconds) / 1e18)
}

/// The value of the sample line `name` (no labels) in Prometheus text, or 0.
/// The sum of a counter over all its label values in Prometheus text.
private func counterSum(_ text: String, _ name: String) -> Double {
    var total = 0.0
    for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
        if let space = line.lastIndex(of: " ") { total += Double(line[line.index(after: space)...]) ?? 0 }
    }
    return total
}

private func gauge(_ text: String, _ name: String) -> Double {
    for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.dropFirst(name.count + 1)) ?? 0
    }
    return 0
}

/// CPU seconds the calling thread spends in `body`: unlike wall time, it does not grow with
/// whatever else loads the machine.
private func time(_ body: () throws -> Void) rethrows -> Double {
    let start = threadCPUSeconds()
    try body()
    return threadCPUSeconds() - start
}

/// Keep-alive HTTP/1.1 POSTs over a blocking socket on a thread of its own.
enum BenchHTTP {
    static func post(port: Int, key: String, bodies: [[UInt8]]) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread { continuation.resume(with: Result { try postBlocking(port: port, key: key, bodies: bodies) }) }.start()
        }
    }

    private static func postBlocking(port: Int, key: String, bodies: [[UInt8]]) throws {
        let fd = connectedSocket(port: port)
        guard fd >= 0 else { throw BenchError(description: "cannot connect to 127.0.0.1:\(port)") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var pending: [UInt8] = []
        for body in bodies {
            let head = "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\n"
                + "Content-Type: application/cloudevents-batch+json\r\nContent-Length: \(body.count)\r\n\r\n"
            let request = Array(head.utf8) + body
            var sent = 0
            while sent < request.count {
                let count = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
                guard count > 0 else { throw BenchError(description: "send failed") }
                sent += count
            }
            // Read one response: headers, then Content-Length bytes.
            while true {
                if let end = find(pending, Array("\r\n\r\n".utf8)) {
                    let head = String(decoding: pending[..<end], as: UTF8.self)
                    guard head.hasPrefix("HTTP/1.1 202") else { throw BenchError(description: "unexpected response: \(head)") }
                    let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                        .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                    if pending.count >= end + 4 + length {
                        pending.removeFirst(end + 4 + length)
                        break
                    }
                }
                let count = recv(fd, &buffer, buffer.count, 0)
                guard count > 0 else { throw BenchError(description: "connection closed") }
                pending.append(contentsOf: buffer[0..<count])
            }
        }
    }

    private static func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return start }
        }
        return nil
    }
}

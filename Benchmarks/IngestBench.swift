#if canImport(Glibc)
import Glibc
#endif
import Contracts
import Foundation
import Ingest
import Kafka
import Logging
import ServiceKit
import ServiceLifecycle
import TestSupport

// loop-bench ingest: events/s of the ingest service against a local Tansu.
//
//   loop-bench ingest [--events 300000] [--http-events 200000] [--connections 4] [--brokers host:port]
//
// raw → loop.events: raw binary-mode events are produced first, then the service consumes,
// validates, dedupes, redacts and writes them; the rate is measured between 5% and 100% written.
// HTTP batch: `POST /v1/events` with batches of 500 structured events over keep-alive connections.

struct IngestBenchOptions {
    var events = 300_000
    var httpEvents = 200_000
    var connections = 4
    var brokers: String?

    init(_ arguments: [String]) throws {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            guard let value = iterator.next() else { throw BenchError(description: "\(argument) needs a value") }
            switch argument {
            case "--events": events = Int(value) ?? events
            case "--http-events": httpEvents = Int(value) ?? httpEvents
            case "--connections": connections = Int(value) ?? connections
            case "--brokers": brokers = value
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
    let passTopic = names.rawEvents + ".passthrough"
    _ = try await KafkaAdmin(config: kafka, logger: logger).createTopics([TopicSpec(
        name: passTopic, partitions: Int32(config.topics.partitions), replicationFactor: Int16(config.topics.replicationFactor))])
    var sample: [ConsumedRecord] = []
    let passThrough = try await measure(options.events) {
        var consumerSettings = ConsumerSettings()
        consumerSettings.bufferedBatches = 2
        let consumer = try KafkaConsumer(config: kafka, groupID: prefix + "-passthrough", consumer: consumerSettings, logger: logger)
        try consumer.subscribe(topics: [names.rawEvents])
        var seen = 0
        var inFlight: [KafkaProducer.PendingDelivery] = []
        for try await batch in consumer.batches(maxRecords: 5000, maxWait: .milliseconds(20)) {
            if sample.count < 50_000 { sample += batch }
            let records = batch.map { OutgoingRecord(topic: passTopic, key: $0.key, value: $0.value, headers: $0.headers) }
            inFlight.append(await producer.enqueue(records))
            if inFlight.count >= 4 { _ = try await inFlight.removeFirst().reports() }
            seen += batch.count
            if seen >= options.events { break }
        }
        for pending in inFlight { _ = try await pending.reports() }
        await consumer.close()
    }
    print("pass-through consume → produce (pipelined): \(Int(passThrough.rate)) records/s")

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
    print("stage: decode+validate+redact (fast path, 1 PII hash/event): \(perEvent(validateSeconds))")
    print("stage: decode+validate without PII: \(perEvent(plainSeconds)) (so the keyed hash ≈ \(perEvent(validateSeconds - plainSeconds)))")
    print("stage: KafkaBinding.decode alone (the general path's first step): \(perEvent(generalSeconds))")

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

    let kafkaAdmin = try KafkaAdmin(config: kafka, logger: logger)
    func written() async throws -> Int {
        var total: Int64 = 0
        for partition in 0..<Int32(config.topics.partitions) {
            total += try await kafkaAdmin.watermarks(topic: names.events, partition: partition).high
        }
        return Int(total)
    }
    let startAt = options.events / 20
    var first = 0
    while true {
        first = try await written()
        if first >= startAt { break }
        try await Task.sleep(for: .milliseconds(10))
    }
    let rawRun = try await measure(options.events - first) {
        while try await written() < options.events { try await Task.sleep(for: .milliseconds(10)) }
    }
    print("raw → loop.events: \(Int(rawRun.rate)) events/s (\(rawRun.records) events in \(String(format: "%.2f", rawRun.seconds)) s)")

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
    let before = try await written()
    let httpRun = try await measure(batches * batchSize) {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for connection in 0..<options.connections {
                let mine = stride(from: connection, to: batches, by: options.connections).map { bodies[$0] }
                tasks.addTask { try await BenchHTTP.post(port: port, key: key.key, bodies: mine) }
            }
            try await tasks.waitForAll()
        }
    }
    let after = try await written()
    guard after - before == batches * batchSize else {
        throw BenchError(description: "HTTP wrote \(after - before) events, expected \(batches * batchSize)")
    }
    print("HTTP batch (500/request, \(options.connections) connections): \(Int(httpRun.rate)) events/s")

    await group.triggerGracefulShutdown()
    try await running.value
    print("")
    print("ingest throughput, broker \(bootstrap), load average \(loadAverage())")
    print(pad("pass-through", 22) + pad("\(Int(passThrough.rate)) records/s", 20))
    print(pad("raw → loop.events", 22) + pad("\(Int(rawRun.rate)) events/s", 20)
        + pad(String(format: "%.2fx pass-through", rawRun.rate / passThrough.rate), 22) + "target 150000")
    print(pad("HTTP batch of 500", 22) + pad("\(Int(httpRun.rate)) events/s", 20)
        + pad(String(format: "%.2fx pass-through", httpRun.rate / passThrough.rate), 22) + "target 50000")
}

/// Seconds `body` takes.
private func time(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

/// The 1, 5 and 15 minute load averages.
private func loadAverage() -> String {
    ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "").split(separator: " ").prefix(3).joined(separator: " ")
}

/// Keep-alive HTTP/1.1 POSTs over a blocking socket on a thread of its own.
enum BenchHTTP {
    static func post(port: Int, key: String, bodies: [[UInt8]]) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread { continuation.resume(with: Result { try postBlocking(port: port, key: key, bodies: bodies) }) }.start()
        }
    }

    private static func postBlocking(port: Int, key: String, bodies: [[UInt8]]) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError(description: "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw BenchError(description: "cannot connect to 127.0.0.1:\(port)") }
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

#if canImport(Glibc)
import Glibc
#endif
import Contracts
import Features
import FeatureStore
import Foundation
import Hummingbird
import Kafka
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceKit
import Storage
import Synchronization
import TestSupport

// loop-bench feature-store: observation events applied and published per second (next to the
// Kafka pass-through of the same records in the same run), per-stage costs, state on disk
// against the raw feature data, and GET /v1/features/{entity} latency under an open-loop load
// with a million entities stored.
//
//   loop-bench feature-store [--events 1000000] [--entities 100000] [--read-entities 1000000 (0: no reads)]
//                            [--rate 1000] [--seconds 10] [--state-cache 50000] [--write-lanes 0] [--connection-per-request]
//                            [--bare-endpoint] [--http-on-pool]
//                            [--config examples/elec2/loop.yaml] [--brokers host:port]
//
// Throughput: the events are produced first; the clock runs from the moment the store holds
// every partition until every change is acknowledged by loop.features. Reads: the state of
// --read-entities entities is seeded straight into SQLite through FeatureStore.seed (not through
// Kafka, which would take minutes), a store is started on it, and a separate client process (this
// executable run with --client-port, so the client's timers and sockets do not compete with the
// server inside one process) sends GETs of random entities at a fixed rate over 8 keep-alive
// connections whatever the responses do (``pacedGets``). The latency it reports runs from sending
// a request to its response's arrival in the client's socket (the kernel's receive timestamp), plus
// any wait for a free connection (that is the server's doing). Next to it: sent → response read
// and latency from each request's due time, which add the client's own delays in waking up.
// Without --brokers it starts its own Tansu.

struct FeatureStoreBenchOptions {
    var events = 1_000_000
    var entities = 100_000
    var readEntities = 1_000_000
    var rate = 1000
    var seconds = 10
    /// Decoded states cached per partition (``FeatureStoreOptions/stateCacheEntities``).
    var stateCache = 50_000
    /// Threads writing a batch's partitions (``FeatureStoreOptions/writeLanes``; 0: one per core).
    var writeLanes = 0
    /// GETs over 8 persistent connections, as HTTP clients of a feature server send them; false:
    /// a new connection per request (`--connection-per-request`), like a client without a pool.
    var keepAlive = true
    var config = "examples/elec2/loop.yaml"
    var brokers: String?
    /// Set in the client process the read phase starts: send the paced GETs to this port and
    /// print each one's latency instead of running the bench.
    var clientPort: Int?
    /// Also send the same load to a route that answers a fixed body of the same size without
    /// touching the store: the HTTP server's own cost in this harness.
    var bareEndpoint = false
    /// Where the server's handlers run: the service's own choice unless `--http-on-pool` asks for
    /// Swift's cooperative pool (to compare).
    var httpThreading = FeatureStoreService.httpThreading
    /// The client's request path before the entity id.
    var clientPath = "/v1/features/"

    init(_ arguments: [String]) throws {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            func value() throws -> String {
                guard let value = iterator.next() else { throw BenchError(description: "\(argument) needs a value") }
                return value
            }
            switch argument {
            case "--events": events = Int(try value()) ?? events
            case "--entities": entities = Int(try value()) ?? entities
            case "--read-entities": readEntities = Int(try value()) ?? readEntities
            case "--rate": rate = Int(try value()) ?? rate
            case "--seconds": seconds = Int(try value()) ?? seconds
            case "--state-cache": stateCache = Int(try value()) ?? stateCache
            case "--write-lanes": writeLanes = Int(try value()) ?? writeLanes
            case "--connection-per-request": keepAlive = false
            case "--config": config = try value()
            case "--brokers": brokers = try value()
            case "--client-port": clientPort = Int(try value())
            case "--bare-endpoint": bareEndpoint = true
            case "--http-on-pool": httpThreading = .cooperativePool
            case "--client-path": clientPath = try value()
            default: throw BenchError(description: "unknown option \(argument)")
            }
        }
        guard events > 0, entities > 0, readEntities >= 0, rate > 0, seconds > 0 else {
            throw BenchError(description: "--events, --entities, --rate and --seconds must be positive, --read-entities not negative")
        }
    }
}

/// The JSON data of bench observation `index` (four prices in [0, 1)).
private func observation(_ random: inout some RandomNumberGenerator) -> [UInt8] {
    JSONValue.object([
        "nswprice": .double(Double.random(in: 0..<1, using: &random)),
        "nswdemand": .double(Double.random(in: 0..<1, using: &random)),
        "vicprice": .double(Double.random(in: 0..<1, using: &random)),
        "transfer": .double(Double.random(in: 0..<1, using: &random)),
    ]).canonicalBytes()
}

@inline(never)
private func benchConfig(_ options: FeatureStoreBenchOptions, prefix: String) throws -> LoopConfig {
    let yaml = try String(contentsOfFile: options.config, encoding: .utf8)
        .replacingOccurrences(of: "prefix: loop ", with: "prefix: \(prefix) ")
    return try LoopConfig.parse(yaml: yaml, file: options.config)
}

func runFeatureStoreBench(_ arguments: [String]) async throws {
    let options = try FeatureStoreBenchOptions(arguments)
    if let port = options.clientPort {
        runReadClient(options, port: port)
        return
    }
    var logger = Logger(label: "loop-bench")
    logger.logLevel = .warning
    let bootstrap: String
    var brokerPID: Int32?
    if let brokers = options.brokers {
        bootstrap = brokers
    } else {
        let broker = try await Broker.start()
        (bootstrap, brokerPID) = (broker.bootstrap, broker.pid)
    }
    let prefix = "bench\(UInt32.random(in: 0...UInt32.max))"
    let config = try benchConfig(options, prefix: prefix)
    let kafka = KafkaConfig(brokers: bootstrap, clientID: "loop-bench")
    try await TopicLayout(config: config).ensureTopics(kafka: kafka, logger: logger)
    let input = try await produceEvents(options, config: config, kafka: kafka, logger: logger)
    let brokerBefore = brokerPID.flatMap(childCPUSeconds)
    let passRate = try await passThrough(options, config: config, kafka: kafka, logger: logger)
    let brokerPassThrough = brokerPID.flatMap(childCPUSeconds).flatMap { now in brokerBefore.map { now - $0 } }
    var writes = try await applyAndPublish(
        options, config: config, kafka: kafka, logger: logger, prefix: prefix, ends: input.ends, brokerPID: brokerPID)
    writes.brokerPassThroughCPUSeconds = brokerPassThrough
    let reads = options.readEntities > 0 ? try await readLatency(options, kafka: kafka, logger: logger, prefix: prefix + "r") : nil
    printSummary(options, config: config, input: input, passRate: passRate, writes: writes, reads: reads)
}

private let benchStart: Int64 = 1_704_067_200_000

/// What the input phase produced.
private struct BenchInput {
    var ends: [Int32: Int64] = [:]
    var rawJSON = 0
    var rawEvents = 0
}

@inline(never)
private func produceEvents(
    _ options: FeatureStoreBenchOptions, config: LoopConfig, kafka: KafkaConfig, logger: Logger
) async throws -> BenchInput {
    print("producing \(options.events) observation events over \(options.entities) entities…")
    var random = SystemRandomNumberGenerator()
    var input = BenchInput()
    let producer = try KafkaProducer(config: kafka, logger: logger)
    let chunk = 50_000
    for first in stride(from: 0, to: options.events, by: chunk) {
        var records: [OutgoingRecord] = []
        records.reserveCapacity(chunk)
        for index in first..<min(first + chunk, options.events) {
            let entity = "entity-\(index % options.entities)"
            let millis = benchStart + Int64(index / options.entities) * 60_000 + Int64(index % 1000)
            let time = Timestamp(seconds: millis / 1000, nanoseconds: Int32(millis % 1000) * 1_000_000).text
            let value = observation(&random)
            input.rawJSON += value.count
            input.rawEvents += value.count + entity.utf8.count + time.utf8.count
            records.append(OutgoingRecord(
                topic: config.topics.names.events, key: Array(entity.utf8), value: value,
                headers: [
                    KafkaHeader(key: "ce_specversion", string: "1.0"), KafkaHeader(key: "ce_id", string: "e\(index)"),
                    KafkaHeader(key: "ce_source", string: "bench"), KafkaHeader(key: "ce_type", string: "loop.observation.v1"),
                    KafkaHeader(key: "ce_subject", string: entity), KafkaHeader(key: "ce_time", string: time),
                    KafkaHeader(key: "content-type", string: "application/json"),
                ]))
        }
        for report in try await producer.send(records) {
            input.ends[report.partition] = max(input.ends[report.partition] ?? 0, report.offset + 1)
        }
    }
    return input
}

/// The same client and batch size, producing each record unchanged: the limit of this machine.
@inline(never)
private func passThrough(
    _ options: FeatureStoreBenchOptions, config: LoopConfig, kafka: KafkaConfig, logger: Logger
) async throws -> Double {
    let producer = try KafkaProducer(config: kafka, logger: logger)
    let passThroughTopic = Broker.uniqueTopic("bench-fs-pass")
    try await KafkaAdmin(config: kafka, logger: logger).createTopics([
        TopicSpec(name: passThroughTopic, partitions: Int32(config.topics.partitions))])
    let consumer = try KafkaConsumer(config: kafka, groupID: Broker.uniqueTopic("bench-fs-pass-group"), logger: logger)
    try consumer.subscribe(topics: [config.topics.names.events])
    var moved = 0
    var start: ContinuousClock.Instant?
    for try await batch in consumer.batches(maxRecords: 20_000, maxWait: .milliseconds(20)) {
        if start == nil { start = .now }
        _ = try await producer.send(batch.map { OutgoingRecord(topic: passThroughTopic, key: $0.key, value: $0.value, headers: $0.headers) })
        consumer.markProcessed(batch)
        moved += batch.count
        if moved >= options.events { break }
    }
    let rate = Double(moved) / seconds(ContinuousClock.now - (start ?? .now))
    await consumer.close()
    return rate
}

/// What the apply-and-publish phase measured.
private struct BenchWrites {
    var rate = 0.0
    var stages = StageSums()
    var files: Int64 = 0
    var records: Int64 = 0
    var history: Int64 = 0
    /// CPU time of this whole process (consumer, writer, publisher, librdkafka) while applying.
    var processCPUSeconds = 0.0
    /// CPU time of the bench's own broker while applying, and while passing the events through.
    var brokerCPUSeconds: Double?
    var brokerPassThroughCPUSeconds: Double?
}

@inline(never)
private func applyAndPublish(
    _ options: FeatureStoreBenchOptions, config: LoopConfig, kafka: KafkaConfig, logger: Logger, prefix: String,
    ends: [Int32: Int64], brokerPID: Int32?
) async throws -> BenchWrites {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fs-bench-\(UUID().uuidString)").path
    let metrics = PrometheusCollectorRegistry()
    let store = try FeatureStore(
        config: config,
        options: FeatureStoreOptions(
            stateDirectory: directory, groupID: prefix + ".bench", batchSize: 20_000, batchWait: .milliseconds(20),
            stateCacheEntities: options.stateCache, writeLanes: options.writeLanes),
        kafka: kafka, logger: logger, metrics: metrics, readiness: Readiness())
    let running = Task { try await store.run() }
    while store.ownedPartitions.count < config.topics.partitions { try await Task.sleep(for: .milliseconds(5)) }
    let processCPU = processCPUSeconds()
    let brokerCPU = brokerPID.flatMap(childCPUSeconds)
    // Polled every 20 ms: each poll reads every partition's progress from SQLite, and polling
    // every 5 ms cost 1.5% of the process's CPU samples; the clock stops at most 20 ms late.
    let applied = try await measure(options.events) {
        while true {
            let acknowledged = try store.acknowledgedInput()
            if ends.allSatisfy({ acknowledged[$0.key] ?? -1 >= $0.value }) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
    var writes = BenchWrites(rate: applied.rate, stages: metricSums(metrics))
    writes.processCPUSeconds = processCPUSeconds() - processCPU
    writes.brokerCPUSeconds = brokerPID.flatMap(childCPUSeconds).flatMap { now in brokerCPU.map { now - $0 } }
    await store.stop()
    _ = try? await running.value
    // After the store closed its files: no write-ahead log is left.
    writes.files = filesSize(directory)
    (writes.records, writes.history) = try stateSizes(directory: directory)
    try? FileManager.default.removeItem(atPath: directory)
    return writes
}

/// What the read phase measured.
private struct BenchReads {
    var entities = 0
    var seedSeconds = 0.0
    var files: Int64 = 0
    var rawJSON = 0
    var gets: [GetTiming] = []
    var requests = 0
    /// CPU time of the serving process (HTTP server, store, idle consumer) per GET.
    var serverCPUPerRequest = 0.0
    /// Seconds per `FeatureQueries.current` call (SQLite read, decode, evaluate), without HTTP.
    var inProcess: [Double] = []
    /// CPU seconds per second of the serving process over 2 s with no requests.
    var idleServerCPUPerSecond = 0.0
    /// CPU seconds by thread name: in those idle 2 s, and while the client sent its GETs.
    var idleThreads = ThreadCPU()
    var loadThreads = ThreadCPU()
    /// User and system CPU and context switches of the serving process while the client ran.
    var serverUsage = ProcessUsage()
    /// Wall seconds the client ran.
    var loadSeconds = 0.0
    /// The same measures for the bare route (`--bare-endpoint`).
    var bareGets: [GetTiming] = []
    var bareServerCPUPerRequest = 0.0
    /// The same measures for a plain SwiftNIO server answering that body (`--bare-endpoint`).
    var nioGets: [GetTiming] = []
    var nioServerCPUPerRequest = 0.0

    func requests(_ options: FeatureStoreBenchOptions) -> Int { options.rate * options.seconds }
}

/// Times `count` reads of random entities straight through ``FeatureQueries/current(_:)``: the
/// part of a GET that is the store's own work.
@inline(never)
private func readsInProcess(_ queries: FeatureQueries, count: Int, entities: Int) -> [Double] {
    var latencies: [Double] = []
    latencies.reserveCapacity(count)
    for _ in 0..<count {
        let started = ContinuousClock.now
        _ = try? queries.current("entity-\(Int.random(in: 0..<entities))")
        latencies.append(seconds(ContinuousClock.now - started))
    }
    return latencies.sorted()
}

@inline(never)
private func readLatency(
    _ options: FeatureStoreBenchOptions, kafka: KafkaConfig, logger: Logger, prefix: String
) async throws -> BenchReads {
    let config = try benchConfig(options, prefix: prefix)
    try await TopicLayout(config: config).ensureTopics(kafka: kafka, logger: logger)
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fs-bench-reads-\(UUID().uuidString)").path
    let storeOptions = FeatureStoreOptions(stateDirectory: directory, groupID: prefix + ".bench")
    let schema = try FeatureSchema(settings: config.features)
    let partitions = Int32(config.topics.partitions)
    var reads = BenchReads(entities: options.readEntities)
    print("seeding \(options.readEntities) entities straight into SQLite (FeatureStore.seed, not Kafka)…")
    let seedStart = ContinuousClock.now
    try seedStates(options.readEntities, partitions: partitions, schema: schema, options: storeOptions)
    reads.seedSeconds = seconds(ContinuousClock.now - seedStart)
    var random = SystemRandomNumberGenerator()
    reads.rawJSON = options.readEntities * observation(&random).count
    reads.files = filesSize(directory)
    let store = try FeatureStore(
        config: config, options: storeOptions, kafka: kafka, logger: logger, metrics: PrometheusCollectorRegistry(), readiness: Readiness())
    let serving = Task { try await store.run() }
    while store.ownedPartitions.count < config.topics.partitions { try await Task.sleep(for: .milliseconds(5)) }
    reads.inProcess = readsInProcess(store.queries, count: min(reads.requests(options), 20_000), entities: options.readEntities)
    let router = AdminRoutes.makeRouter(readiness: Readiness(), metrics: PrometheusCollectorRegistry())
    store.queries.addRoutes(to: router)
    let bareBody = ByteBuffer(bytes: bareBody(size: 600))
    router.get("bench/bare/:entity") { _, context in
        _ = try context.parameters.require("entity")
        return Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: ResponseBody(byteBuffer: bareBody))
    }
    let server = AdminServer(router: router, host: "127.0.0.1", port: 0, threading: options.httpThreading, logger: logger)
    let http = Task { try await server.run() }
    guard let port = await server.boundPort() else { throw BenchError(description: "the HTTP server did not start") }
    reads.requests = reads.requests(options)
    let idleThreads = threadCPU()
    let idleCPU = processCPUSeconds()
    let idleStart = ContinuousClock.now
    try await Task.sleep(for: .seconds(2))
    reads.idleServerCPUPerSecond = (processCPUSeconds() - idleCPU) / seconds(ContinuousClock.now - idleStart)
    reads.idleThreads = threadCPU().since(idleThreads)
    print("GET /v1/features/{entity}: \(reads.requests) requests at \(options.rate)/s over \(options.readEntities) entities from a client process…")
    let serverThreads = threadCPU()
    let serverUsage = ProcessUsage()
    let serverCPU = processCPUSeconds()
    let serverStart = ContinuousClock.now
    reads.gets = try await clientProcessRequests(port: port, path: options.clientPath, options: options)
    reads.serverCPUPerRequest = (processCPUSeconds() - serverCPU) / Double(reads.requests)
    reads.serverUsage = ProcessUsage().since(serverUsage)
    reads.loadSeconds = seconds(ContinuousClock.now - serverStart)
    reads.loadThreads = threadCPU().since(serverThreads)
    if options.bareEndpoint {
        print("GET /bench/bare/{entity}: the same load on a route answering a fixed body…")
        let bareCPU = processCPUSeconds()
        reads.bareGets = try await clientProcessRequests(port: port, path: "/bench/bare/", options: options)
        reads.bareServerCPUPerRequest = (processCPUSeconds() - bareCPU) / Double(reads.requests)
        print("GET of the same body from a plain SwiftNIO HTTP/1 server (no Hummingbird)…")
        let nioServer = try await FixedBodyServer.start(body: bareBody)
        let nioCPU = processCPUSeconds()
        reads.nioGets = try await clientProcessRequests(port: nioServer.port, path: "/bare/", options: options)
        reads.nioServerCPUPerRequest = (processCPUSeconds() - nioCPU) / Double(reads.requests)
        try await nioServer.close()
    }
    http.cancel()
    await store.stop()
    _ = try? await serving.value
    try? FileManager.default.removeItem(atPath: directory)
    return reads
}

private func seedStates(_ count: Int, partitions: Int32, schema: FeatureSchema, options: FeatureStoreOptions) throws {
    for partition in 0..<partitions {
        var states: [EntityFeatureState] = []
        states.reserveCapacity(50_000)
        for index in stride(from: Int(partition), to: count, by: Int(partitions)) {
            states.append(seededState(index, schema: schema, start: benchStart))
            if states.count == 50_000 {
                try FeatureStore.seed(states, partition: partition, options: options)
                states.removeAll(keepingCapacity: true)
            }
        }
        try FeatureStore.seed(states, partition: partition, options: options)
    }
}

private func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1000
}

@inline(never)
private func printSummary(
    _ options: FeatureStoreBenchOptions, config: LoopConfig, input: BenchInput, passRate: Double, writes: BenchWrites, reads: BenchReads?
) {
    let load = loadAverage()
    let events = Double(options.events)
    let stages = writes.stages
    print("")
    print("feature-store bench — \(options.events) events over \(options.entities) entities, \(config.topics.partitions) partitions, load average \(load)")
    print(pad("kafka pass-through", 34) + String(format: "%10.0f events/s", passRate))
    print(pad("state cache", 34) + String(format: "%10d  decoded states per partition", options.stateCache))
    print(pad("write lanes", 34) + String(format: "%10d  threads writing a batch's partitions", options.writeLanes == 0 ? ProcessInfo.processInfo.activeProcessorCount : options.writeLanes))
    print(pad("applied + published", 34) + String(format: "%10.0f events/s  (%.0f%% of pass-through; target ≥ 100000)",
                                                 writes.rate, 100 * writes.rate / passRate))
    print(pad("  wall time per event", 34) + String(format: "%10.2f µs", 1e6 / writes.rate))
    print(pad("  decode+apply+store per event", 34) + String(format: "%10.2f µs  (%d batches, each from queueing on the lanes; batches overlap)",
                                                          1e6 * stages.applySeconds / events, Int(stages.batches)))
    print(pad("  write lanes' thread CPU per event", 34) + String(format: "%10.2f µs  (decode, apply, commit, summed over the lanes)",
                                                        1e6 * stages.writeCPUSeconds / events))
    print(pad("  process CPU per event", 34) + String(format: "%10.2f µs  (consumer, writer, publisher, librdkafka; not the broker)",
                                                   1e6 * writes.processCPUSeconds / events))
    if let broker = writes.brokerCPUSeconds, let passing = writes.brokerPassThroughCPUSeconds {
        print(pad("  broker CPU per event", 34) + String(format: "%10.2f µs  (Tansu; %.2f µs per event passed through)",
                                                      1e6 * broker / events, 1e6 * passing / events))
    }
    print(pad("  mean batch publish lag", 34) + String(format: "%10.1f ms  (batch received → acknowledged by loop.features)",
                                                    1000 * stages.publishSeconds / max(1, stages.batches)))
    print(pad("  entity states written", 34) + String(format: "%10.0f  (%.1f events per write)", stages.written, events / max(1, stages.written)))
    print(pad("  history snapshots", 34) + String(format: "%10.0f", stages.snapshots))
    print(pad("raw feature data", 34) + String(format: "%10.1f MB  JSON event data consumed (%.1f MB with entity and ce_time)",
                                              Double(input.rawJSON) / 1e6, Double(input.rawEvents) / 1e6))
    print(pad("state on disk", 34) + String(format: "%10.1f MB  (%.2f× the JSON data; target ≤ 2×): records %.1f MB, history %.1f MB",
                                           Double(writes.files) / 1e6, Double(writes.files) / Double(input.rawJSON),
                                           Double(writes.records) / 1e6, Double(writes.history) / 1e6))
    guard let reads else { return }
    print(pad("reads: entities stored", 34) + String(format: "%10d  seeded through FeatureStore.seed (not Kafka) in %.1f s",
                                                  reads.entities, reads.seedSeconds))
    print(pad("reads: state on disk", 34) + String(format: "%10.1f MB  (%.2f× the %.1f MB JSON of their one event each)",
                                                Double(reads.files) / 1e6, Double(reads.files) / Double(reads.rawJSON), Double(reads.rawJSON) / 1e6))
    print(pad("  store work per GET (no HTTP)", 34) + String(format: "p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms over %d reads (SQLite read, decode, evaluate)",
                                                       percentile(reads.inProcess, 0.5), percentile(reads.inProcess, 0.99),
                                                       percentile(reads.inProcess, 0.999), reads.inProcess.count))
    let connections = options.keepAlive ? "8 keep-alive connections" : "a connection per request"
    let server = reads.gets.map(\.serverLatency).sorted()
    print(pad("GET /v1/features/{entity}", 34) + String(format: "p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms (target p99 ≤ 2 ms): ",
                                                    percentile(server, 0.5), percentile(server, 0.99), percentile(server, 0.999),
                                                    (server.last ?? .nan) * 1000)
          + "sent → response arrived in the client's socket (kernel timestamp), plus any wait for a free connection (an earlier slow response's doing)")
    print(pad("", 34) + String(format: "at %d req/s open loop, %d of %d failed, over ", options.rate, reads.requests - reads.gets.count, reads.requests)
          + connections)
    let fromSent = reads.gets.map(\.fromSent).sorted()
    print(pad("  sent → response read", 34) + String(format: "p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms: adds the client's delay in waking up to read",
                                                percentile(fromSent, 0.5), percentile(fromSent, 0.99), percentile(fromSent, 0.999)))
    let fromDue = reads.gets.map(\.fromDue).sorted()
    print(pad("  from due time", 34) + String(format: "p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms: adds the client's lateness in sending too",
                                            percentile(fromDue, 0.5), percentile(fromDue, 0.99), percentile(fromDue, 0.999)))
    let lateness = reads.gets.map(\.clientLateness).sorted()
    print(pad("  client's own lateness", 34) + String(format: "p50 %.3f ms, p99 %.3f ms: due → sent with a connection free (its timer waking late)",
                                                  percentile(lateness, 0.5), percentile(lateness, 0.99)))
    print(pad("  server process CPU per GET", 34) + String(format: "%10.1f µs  (HTTP, store, and whatever else runs in the process)", 1e6 * reads.serverCPUPerRequest))
    let usage = reads.serverUsage
    let requests = Double(reads.requests)
    print(pad("    of which", 34) + String(format: "user %.1f µs, system %.1f µs; %.1f voluntary + %.1f involuntary context switches per GET",
                                         1e6 * usage.user / requests, 1e6 * usage.system / requests,
                                         usage.voluntarySwitches / requests, usage.involuntarySwitches / requests))
    if options.bareEndpoint {
        func floor(_ label: String, gets: [GetTiming], serverCPUPerRequest: Double) {
            let server = gets.map(\.serverLatency).sorted()
            let fromDue = gets.map(\.fromDue).sorted()
            print(pad(label, 34) + String(format: "p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, %d of %d failed; from due time p99 %.3f ms; server CPU %.1f µs per GET",
                                          percentile(server, 0.5), percentile(server, 0.99), percentile(server, 0.999),
                                          reads.requests - gets.count, reads.requests, percentile(fromDue, 0.99), 1e6 * serverCPUPerRequest))
        }
        floor("GET of a fixed body (no store)", gets: reads.bareGets, serverCPUPerRequest: reads.bareServerCPUPerRequest)
        floor("  same body, plain SwiftNIO", gets: reads.nioGets, serverCPUPerRequest: reads.nioServerCPUPerRequest)
    }
    print(pad("  server process CPU, no requests", 34) + String(format: "%10.1f ms/s  (the same process over 2 s before the GETs)", 1000 * reads.idleServerCPUPerSecond))
    print("  server threads' CPU in ms/s, idle → under GETs:")
    for name in Set(reads.idleThreads.seconds.keys).union(reads.loadThreads.seconds.keys).sorted() {
        let idle = 1000 * (reads.idleThreads.seconds[name] ?? 0) / 2
        let load = 1000 * (reads.loadThreads.seconds[name] ?? 0) / max(reads.loadSeconds, 1e-9)
        guard idle >= 0.5 || load >= 0.5 else { continue }
        print("    " + pad(name, 30) + String(format: "%8.1f → %8.1f", idle, load))
    }
}

/// This process's user and system CPU seconds and context switches so far (`getrusage`).
private struct ProcessUsage {
    var user = 0.0
    var system = 0.0
    var voluntarySwitches = 0.0
    var involuntarySwitches = 0.0

    init() {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        voluntarySwitches = Double(usage.ru_nvcsw)
        involuntarySwitches = Double(usage.ru_nivcsw)
    }

    /// What was used since `earlier`.
    func since(_ earlier: ProcessUsage) -> ProcessUsage {
        var difference = self
        difference.user -= earlier.user
        difference.system -= earlier.system
        difference.voluntarySwitches -= earlier.voluntarySwitches
        difference.involuntarySwitches -= earlier.involuntarySwitches
        return difference
    }
}

/// CPU seconds of this process's threads, summed by thread name (from `/proc/self/task`).
private struct ThreadCPU {
    var seconds: [String: Double] = [:]

    /// What each name used since `earlier` (threads that ended in between are not counted).
    func since(_ earlier: ThreadCPU) -> ThreadCPU {
        ThreadCPU(seconds: seconds.mapValues { $0 }.merging(earlier.seconds.mapValues { -$0 }, uniquingKeysWith: +))
    }
}

private func threadCPU() -> ThreadCPU {
    var result = ThreadCPU()
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    for task in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [] {
        guard let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
              let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { continue }
        let name = String(stat[stat.index(after: open)..<close]).filter { !$0.isNumber }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
        result.seconds[name, default: 0] += (user + system) / ticks
    }
    return result
}

/// User plus system CPU time of child process `pid` so far (from `/proc/<pid>/stat`), in seconds.
private func childCPUSeconds(_ pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let end = stat.lastIndex(of: ")") else { return nil }
    // After the command in parentheses: state is field 3, utime and stime are fields 14 and 15.
    let fields = stat[stat.index(after: end)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A state holding one observation, for the seeded read store.
private func seededState(_ index: Int, schema: FeatureSchema, start: Int64) -> EntityFeatureState {
    var state = EntityFeatureState(entityID: "entity-\(index)", schema: schema)
    let values = ["nswprice": Double(index % 997) / 997, "nswdemand": 0.5, "vicprice": 0.25, "transfer": 0.75]
    _ = try? state.apply(FeatureEvent(time: Double(start) / 1000 + Double(index % 86_400), type: "loop.observation.v1", values: values))
    return state
}

/// The sums the bench reads from the store's metrics.
private struct StageSums {
    var applySeconds = 0.0
    var publishSeconds = 0.0
    var batches = 0.0
    var written = 0.0
    var snapshots = 0.0
    /// Thread CPU of the write lanes (decode, apply, commit).
    var writeCPUSeconds = 0.0
}

private func metricSums(_ registry: PrometheusCollectorRegistry) -> StageSums {
    var sums = StageSums()
    for line in registry.emitToString().split(separator: "\n") where !line.hasPrefix("#") {
        let parts = line.split(separator: " ")
        guard parts.count == 2, let value = Double(parts[1]) else { continue }
        switch parts[0] {
        case "feature_store_apply_seconds_sum": sums.applySeconds = value
        case "feature_store_publish_lag_seconds_sum": sums.publishSeconds = value
        case "feature_store_publish_lag_seconds_count": sums.batches = value
        case "feature_store_write_batch_entities_sum": sums.written = value
        case "feature_store_history_snapshots_total": sums.snapshots = value
        case "feature_store_write_cpu_seconds_total": sums.writeCPUSeconds = value
        default: continue
        }
    }
    return sums
}

/// Bytes of every file in `directory` (databases, and any write-ahead log or shared memory).
private func filesSize(_ directory: String) -> Int64 {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return files.reduce(0) { total, file in
        let size = (try? FileManager.default.attributesOfItem(atPath: directory + "/" + file)[.size] as? NSNumber)?.int64Value ?? 0
        return total + size
    }
}

/// Bytes of the entity records and of the history snapshots in the state files.
private func stateSizes(directory: String) throws -> (Int64, Int64) {
    var entities: Int64 = 0
    var history: Int64 = 0
    for file in try FileManager.default.contentsOfDirectory(atPath: directory) where file.hasSuffix(".sqlite") {
        let database = try Database(path: directory + "/" + file)
        try database.withConnection { db in
            let statement = try db.statement(
                "SELECT (SELECT coalesce(sum(length(entity) + length(state)), 0) FROM entities), (SELECT coalesce(sum(length(entity) + length(state) + 16), 0) FROM history)")
            if try statement.step() {
                entities += statement.int64(at: 0)
                history += statement.int64(at: 1)
            }
            statement.reset()
        }
    }
    return (entities, history)
}

/// Runs this executable as the read client (`feature-store --client-port`) against `port`, with
/// GETs of `path` followed by an entity id, and returns the timings of its successful requests.
private func clientProcessRequests(port: Int, path: String, options: FeatureStoreBenchOptions) async throws -> [GetTiming] {
    guard let executable = Bundle.main.executableURL else { throw BenchError(description: "cannot find this executable to start the read client") }
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("fs-bench-client-\(UUID().uuidString)")
    guard FileManager.default.createFile(atPath: output.path, contents: nil) else {
        throw BenchError(description: "cannot create \(output.path)")
    }
    defer { try? FileManager.default.removeItem(at: output) }
    let handle = try FileHandle(forWritingTo: output)
    let client = Process()
    client.executableURL = executable
    client.arguments = ["feature-store", "--client-port", String(port), "--rate", String(options.rate), "--seconds", String(options.seconds),
                        "--read-entities", String(options.readEntities), "--client-path", path] + (options.keepAlive ? [] : ["--connection-per-request"])
    client.standardOutput = handle
    try client.run()
    try? handle.close()
    while client.isRunning { try await Task.sleep(for: .milliseconds(20)) }
    guard client.terminationStatus == 0 else { throw BenchError(description: "the read client exited with status \(client.terminationStatus)") }
    return try String(contentsOf: output, encoding: .utf8).split(separator: "\n").compactMap { line in
        let fields = line.split(separator: " ").compactMap { Double($0) }
        guard fields.count == 4 else { return nil }
        return GetTiming(fromDue: fields[0], fromSent: fields[1], toArrival: fields[2], connectionWait: fields[3])
    }
}

/// The read client process: sends the paced GETs and prints `<from due> <from sent> <to arrival> <connection wait>`
/// in seconds (``GetTiming``), one line per successful request.
private func runReadClient(_ options: FeatureStoreBenchOptions, port: Int) {
    let timings = pacedGets(
        port: port, prefix: options.clientPath, total: options.rate * options.seconds, rate: options.rate,
        entities: options.readEntities, keepAlive: options.keepAlive)
    var text = ""
    text.reserveCapacity(timings.count * 36)
    for timing in timings { text += "\(timing.fromDue) \(timing.fromSent) \(timing.toArrival) \(timing.connectionWait)\n" }
    FileHandle.standardOutput.write(Data(text.utf8))
}

/// A fixed JSON body of about the size of a real response (`size` bytes).
private func bareBody(size: Int) -> [UInt8] {
    Array("{\"padding\":\"".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: max(0, size - 15)) + Array("\"}".utf8)
}

// MARK: - Plain SwiftNIO server

/// An HTTP/1.1 server on one of NIO's shared event loops that answers every request with one fixed
/// body, closing the connection when the request asks to: the floor of HTTP serving in this harness.
private struct FixedBodyServer {
    let channel: any Channel
    var port: Int { channel.localAddress?.port ?? 0 }

    static func start(body bytes: ByteBuffer) async throws -> FixedBodyServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton.next())
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FixedBodyHandler(body: bytes))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return FixedBodyServer(channel: channel)
    }

    func close() async throws { try await channel.close() }
}

private final class FixedBodyHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let body: ByteBuffer
    private var keepAlive = true

    init(body: ByteBuffer) { self.body = body }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): keepAlive = head.isKeepAlive
        case .body: break
        case .end:
            var headers = HTTPHeaders([("content-type", "application/json; charset=utf-8"), ("content-length", String(body.readableBytes))])
            if !keepAlive { headers.add(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive { done.whenComplete { [context] _ in context.close(promise: nil) } }
        }
    }
}

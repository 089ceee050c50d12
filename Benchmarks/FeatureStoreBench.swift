#if canImport(Glibc)
import Glibc
#endif
import Contracts
import FeatureStore
import Foundation
import Kafka
import Logging
import Prometheus
import ServiceKit
import Storage
import TestSupport

// loop-bench feature-store: observation events applied and published per second, GET
// /v1/features/{entity} latency at a fixed request rate with every entity stored, and state on
// disk against the raw feature data.
//
//   loop-bench feature-store [--events 1000000] [--entities 1000000] [--rate 1000] [--seconds 10]
//                            [--config examples/elec2/loop.yaml] [--brokers host:port]
//
// The events are produced first; the clock runs from the moment the store holds every partition
// until every change is acknowledged by loop.features. Without --brokers it starts its own Tansu.

struct FeatureStoreBenchOptions {
    var events = 1_000_000
    var entities = 1_000_000
    var rate = 1000
    var seconds = 10
    var config = "examples/elec2/loop.yaml"
    var brokers: String?

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
            case "--rate": rate = Int(try value()) ?? rate
            case "--seconds": seconds = Int(try value()) ?? seconds
            case "--config": config = try value()
            case "--brokers": brokers = try value()
            default: throw BenchError(description: "unknown option \(argument)")
            }
        }
        guard events > 0, entities > 0, rate > 0, seconds > 0 else {
            throw BenchError(description: "--events, --entities, --rate and --seconds must be positive")
        }
    }
}

func runFeatureStoreBench(_ arguments: [String]) async throws {
    let options = try FeatureStoreBenchOptions(arguments)
    var logger = Logger(label: "loop-bench")
    logger.logLevel = .warning
    let bootstrap: String
    if let brokers = options.brokers { bootstrap = brokers } else { bootstrap = try await Broker.start().bootstrap }
    let prefix = "bench\(UInt32.random(in: 0...UInt32.max))"
    let yaml = try String(contentsOfFile: options.config, encoding: .utf8)
        .replacingOccurrences(of: "prefix: loop ", with: "prefix: \(prefix) ")
    let config = try LoopConfig.parse(yaml: yaml, file: options.config)
    let kafka = KafkaConfig(brokers: bootstrap, clientID: "loop-bench")
    try await TopicLayout(config: config).ensureTopics(kafka: kafka, logger: logger)

    // MARK: Input
    print("producing \(options.events) observation events over \(options.entities) entities…")
    var random = SystemRandomNumberGenerator()
    let start: Int64 = 1_704_067_200_000
    var rawBytes = 0
    var rawBinaryBytes = 0
    let producer = try KafkaProducer(config: kafka, logger: logger)
    var ends: [Int32: Int64] = [:]
    let chunk = 50_000
    for first in stride(from: 0, to: options.events, by: chunk) {
        var records: [OutgoingRecord] = []
        records.reserveCapacity(chunk)
        for index in first..<min(first + chunk, options.events) {
            let entity = "entity-\(index % options.entities)"
            let millis = start + Int64(index / options.entities) * 60_000 + Int64(index % 1000)
            let time = Timestamp(seconds: millis / 1000, nanoseconds: Int32(millis % 1000) * 1_000_000).text
            let value = JSONValue.object([
                "nswprice": .double(Double.random(in: 0..<1, using: &random)),
                "nswdemand": .double(Double.random(in: 0..<1, using: &random)),
                "vicprice": .double(Double.random(in: 0..<1, using: &random)),
                "transfer": .double(Double.random(in: 0..<1, using: &random)),
            ]).canonicalBytes()
            rawBytes += value.count + entity.utf8.count + time.utf8.count
            rawBinaryBytes += entity.utf8.count + 8 + 4 * 8
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
            ends[report.partition] = max(ends[report.partition] ?? 0, report.offset + 1)
        }
    }

    // MARK: Apply and publish
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fs-bench-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let store = try FeatureStore(
        config: config,
        options: FeatureStoreOptions(stateDirectory: directory, groupID: prefix + ".bench", batchSize: 20_000, batchWait: .milliseconds(20)),
        kafka: kafka, logger: logger, metrics: PrometheusCollectorRegistry(), readiness: Readiness())
    let running = Task { try await store.run() }
    while store.ownedPartitions.count < config.topics.partitions { try await Task.sleep(for: .milliseconds(5)) }
    let applied = try await measure(options.events) {
        while true {
            let acknowledged = try store.acknowledgedInput()
            if ends.allSatisfy({ acknowledged[$0.key] ?? -1 >= $0.value }) { break }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
    print(String(format: "applied and published: %d events in %.2f s = %.0f events/s (target ≥ 100000)",
                 applied.records, applied.seconds, applied.rate))

    // MARK: State on disk
    let (stateBytes, historyBytes) = try stateSizes(directory: directory)
    let onDisk = store.stateBytesOnDisk
    let stored = min(options.entities, options.events)
    print("entities stored: \(stored)")
    print(String(format: "raw feature data: %.1f MB as JSON events (entity, time, data), %.1f MB as binary (entity, f64 time, 4 × f64)",
                 Double(rawBytes) / 1e6, Double(rawBinaryBytes) / 1e6))
    print(String(format: "state on disk: %.1f MB of files (%.2f× JSON, %.2f× binary); entity records %.1f MB, history snapshots %.1f MB",
                 Double(onDisk) / 1e6, Double(onDisk) / Double(rawBytes), Double(onDisk) / Double(rawBinaryBytes),
                 Double(stateBytes) / 1e6, Double(historyBytes) / 1e6))

    // MARK: Reads
    let router = AdminRoutes.makeRouter(readiness: Readiness(), metrics: PrometheusCollectorRegistry())
    store.queries.addRoutes(to: router)
    let server = AdminServer(router: router, host: "127.0.0.1", port: 0, logger: logger)
    let serving = Task { try await server.run() }
    guard let port = await server.boundPort() else { throw BenchError(description: "the HTTP server did not start") }
    let total = options.rate * options.seconds
    print("GET /v1/features/{entity}: \(total) requests at \(options.rate)/s over \(stored) entities…")
    let latencies = await paceRequests(port: port, total: total, rate: options.rate, entities: stored)
    let sorted = latencies.sorted()
    func percentile(_ p: Double) -> Double { sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1000 }
    let failures = total - latencies.count
    print(String(format: "GET latency: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms, %d failed (target p99 ≤ 2 ms)",
                 percentile(0.5), percentile(0.99), percentile(0.999), (sorted.last ?? .nan) * 1000, failures))
    serving.cancel()
    await store.stop()
    _ = try? await running.value
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

/// Sends `total` GETs of random entities at `rate` per second from one thread (a connection per
/// request, like an uncached client); returns each successful request's latency in seconds.
private func paceRequests(port: Int, total: Int, rate: Int, entities: Int) async -> [Double] {
    await withCheckedContinuation { continuation in
        Thread {
            var latencies: [Double] = []
            latencies.reserveCapacity(total)
            let interval = 1.0 / Double(rate)
            let begin = Date().timeIntervalSince1970
            for index in 0..<total {
                let due = begin + Double(index) * interval
                let wait = due - Date().timeIntervalSince1970
                if wait > 0 { usleep(UInt32(wait * 1e6)) }
                let entity = "entity-\(Int.random(in: 0..<entities))"
                let started = ContinuousClock.now
                if httpStatus(port: port, path: "/v1/features/\(entity)") == 200 {
                    let (seconds, attoseconds) = (ContinuousClock.now - started).components
                    latencies.append(Double(seconds) + Double(attoseconds) / 1e18)
                }
            }
            continuation.resume(returning: latencies)
        }.start()
    }
}

/// One blocking HTTP/1.1 GET to 127.0.0.1; the status code, or 0 on failure.
private func httpStatus(port: Int, path: String) -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { return 0 }
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { return 0 }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    guard send(descriptor, request, request.count, 0) == request.count else { return 0 }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = recv(descriptor, &buffer, buffer.count, 0)
        if count <= 0 { break }
        received.append(contentsOf: buffer[0..<count])
    }
    let head = String(decoding: received.prefix(16), as: UTF8.self).split(separator: " ")
    return head.count >= 2 ? Int(head[1]) ?? 0 : 0
}

#if canImport(Glibc)
import Glibc
#endif
import Contracts
@testable import Feedback
import Foundation
import Kafka
import ServiceKit
import Testing
import TestSupport

@Suite("exactly-once delivery", .serialized)
struct DeliveryTests {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("a crash after the broker acknowledged part of the outbox but before it was confirmed: recovery sends only the rest, byte for byte, re-reading referenced predictions")
    func outboxRecovery() async throws {
        let broker = try await Broker.shared()
        let kafka = KafkaConfig(brokers: broker.bootstrap)
        let labeled = broker.uniqueTopic("labeled")
        let predictions = broker.uniqueTopic("predictions")
        try await KafkaAdmin(config: kafka, logger: testLogger).createTopics([
            TopicSpec(name: labeled, partitions: 2), TopicSpec(name: predictions, partitions: 2),
        ])
        let producer = try KafkaProducer(config: kafka, logger: testLogger)
        let served = (0..<6).map { prediction("r\($0)", at: 0) }
        let reports = try await producer.send(served.map {
            OutgoingRecord(topic: predictions, key: Array($0.entity.utf8), value: $0.bytes, partition: 1)
        })
        let path = try temporaryDirectory("outbox") + "/join.sqlite"
        let store = try JoinStore(path: path, policy: JoinPolicy(deadlineMs: 2 * hour, retentionMs: 24 * hour, positiveLabel: "1"))
        var eventOffset: Int64 = 0
        func outcomeRecord(_ i: Int) -> InputRecord {
            defer { eventOffset += 1 }
            return InputRecord(topic: "events", partition: 1, offset: eventOffset, input: outcome("r\(i)", i % 2 == 0, at: 10))
        }
        // Batch 1: the six predictions and the outcomes of r0…r2; batch 2: the outcomes of r3…r5
        // (their predictions waited): all stored as references to the predictions in the topic.
        let first = try store.apply(zip(served, reports).map { served, report in
            InputRecord(topic: predictions, partition: 1, offset: report.offset, input: .prediction(served))
        } + (0..<3).map(outcomeRecord))
        let second = try store.apply((3..<6).map(outcomeRecord))
        let outbox = first.outbox + second.outbox
        #expect(outbox.count == 6)
        #expect(outbox.map(\.reference?.offset) == reports.map(\.offset))
        #expect(try store.outbox().allSatisfy(\.bytes.isEmpty), "every example is stored as a reference, spliced by the publisher")

        // The crashed run: r0, r1 (joined in their predictions' batch) and r3, r4 (joined later) reached the broker, the confirmation never happened.
        _ = try await producer.send([outbox[0], outbox[1], outbox[3], outbox[4]].map { entry in
            OutgoingRecord(
                topic: labeled, key: Array(entry.entity.utf8), value: entry.bytes,
                headers: [KafkaHeader(key: LabeledPublisher.requestIdHeader, string: entry.requestId),
                          KafkaHeader(key: LabeledPublisher.labelSourceHeader, string: entry.labelSource.rawValue)],
                partition: entry.partition)
        })

        let restarted = try JoinStore(path: path, policy: store.policy)
        let publisher = LabeledPublisher(
            producer: producer, store: restarted, topic: labeled, predictionsTopic: predictions, kafka: kafka, logger: testLogger)
        #expect(try await publisher.recover() == 2)
        #expect(try restarted.outbox().isEmpty)
        #expect(try await publisher.recover() == 0)

        let written = try await readAll(labeled, partitions: 2, brokers: broker.bootstrap)
        #expect(written.count == 6)
        #expect(Set(written.map { $0.value ?? [] }) == Set(outbox.map(\.bytes)), "recovered examples are byte-identical")
        #expect(written.allSatisfy { $0.partition == 1 }, "examples go to the partition of their input")
    }

    // MARK: - kill -9 of the feedback process

    /// A copy of the Elec2 loop.yaml with its own topic prefix and two partitions.
    static func writeConfig(prefix: String, directory: String) throws -> String {
        let original = try String(contentsOf: packageRoot.appendingPathComponent("examples/elec2/loop.yaml"), encoding: .utf8)
        let text = original
            .replacingOccurrences(of: "prefix: loop ", with: "prefix: \(prefix) ")
            .replacingOccurrences(of: "partitions: 4 ", with: "partitions: 2 ")
            .replacingOccurrences(of: "snapshotInterval: 10s", with: "snapshotInterval: 1s")
        let path = directory + "/loop.yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Starts the built `feedback`, logging to `<logDirectory>/<name>.log`.
    static func launch(
        config: String, state: String, brokers: String, group: String, port: Int, name: String = "feedback",
        logDirectory: String, apiKeys: String? = nil
    ) throws -> ChildProcess {
        var environment = ["LOOP_BROKERS": brokers, "LOOP_STATE_DIR": state, "LOOP_GROUP": group, "LOOP_BATCH_SIZE": "200"]
        if let apiKeys { environment["LOOP_API_KEYS"] = apiKeys }
        return try ChildProcess.launch(
            "feedback", name: name, arguments: ["--config", config, "--admin-port", String(port), "--admin-host", "127.0.0.1"],
            environment: environment, logDirectory: URL(fileURLWithPath: logDirectory))
    }

    static func outcomeRecord(topic: String, requestId: String, entity: String, label: Bool, timeMs: Int64) -> OutgoingRecord {
        let time = Timestamp(seconds: timeMs / 1000, nanoseconds: Int32(timeMs % 1000) * 1_000_000)
        let event = CloudEvent(
            id: "o-\(requestId)", source: "test", type: EventType.outcome.description, subject: entity, time: time,
            data: .json(["requestId": .string(requestId), "label": .string(label ? "1" : "0")]))
        let message = KafkaBinding.encode(event, mode: .binary, key: .subject)
        return OutgoingRecord(topic: topic, key: message.key, value: message.value,
                              headers: message.headers.map { KafkaHeader(key: $0.name, value: $0.value) })
    }

    /// Predictions and outcomes for requests `range`, interleaved over eight entities (only the
    /// predictions or only the outcomes when `predictions` or `outcomes` is false).
    static func pairs(_ range: Range<Int>, topics: Topics, predictions: Bool = true, outcomes: Bool = true) -> [OutgoingRecord] {
        var records: [OutgoingRecord] = []
        let start: Int64 = 1_700_000_000_000
        for i in range {
            let entity = "e\(i % 8)"
            let served = prediction("req-\(i)", entity: entity, at: start + Int64(i) * 1000, score: Double(i % 100) / 100)
            if predictions { records.append(OutgoingRecord(topic: topics.predictions, key: Array(entity.utf8), value: served.bytes)) }
            if outcomes {
                records.append(outcomeRecord(topic: topics.events, requestId: "req-\(i)", entity: entity, label: i % 3 == 0,
                                             timeMs: start + Int64(i) * 1000 + 500))
            }
        }
        return records
    }

    @Test("kill -9 of the feedback executable mid-stream, then restart: every labeled example exactly once, also of predictions that waited for their outcomes across the kill")
    func killAndRestart() async throws {
        let broker = try await Broker.shared()
        let directory = try temporaryDirectory("kill")
        let prefix = broker.uniqueTopic("fb")
        let configPath = try Self.writeConfig(prefix: prefix, directory: directory)
        let config = try LoopConfig.load(path: configPath)
        let topics = config.topics.names
        try await TopicLayout(config: config).ensureTopics(kafka: KafkaConfig(brokers: broker.bootstrap), logger: testLogger)
        let producer = try KafkaProducer(config: KafkaConfig(brokers: broker.bootstrap), logger: testLogger)
        let state = directory + "/state"
        let group = broker.uniqueTopic("feedback")
        let total = 3000

        // Requests 1500..<2000 get their outcomes only after the restart: their predictions wait
        // across the kill, and the restarted service reads their records back from the topic.
        _ = try await producer.send(Self.pairs(0..<1500, topics: topics) + Self.pairs(1500..<2000, topics: topics, outcomes: false))
        let port = try Broker.freePort()
        let first = try Self.launch(
            config: configPath, state: state, brokers: broker.bootstrap, group: group, port: port, name: "first", logDirectory: directory)
        defer { first.kill() }
        func joined(_ port: Int) async -> Double {
            guard let reply = try? await HTTPGet.request(port: port, path: "/metrics") else { return -1 }
            return HTTPGet.sample(reply.body, #"loop_feedback_join_total{result="joined"}"#) ?? 0
        }
        #expect(await waitUntil(timeout: .seconds(30)) { await joined(port) > 0 }, "no join before the kill; log: \(first.logFile.path)")
        first.kill()
        #expect(await first.waitForExit(timeout: .seconds(20)))
        #expect(first.termination == .signalled(SIGKILL))

        _ = try await producer.send(
            Self.pairs(1500..<2000, topics: topics, predictions: false) + Self.pairs(2000..<total, topics: topics))
        let secondPort = try Broker.freePort()
        let second = try Self.launch(
            config: configPath, state: state, brokers: broker.bootstrap, group: group, port: secondPort, name: "second",
            logDirectory: directory)
        defer { second.kill() }
        #expect(await waitUntil(timeout: .seconds(40)) { await joined(secondPort) == Double(total) },
                "joined never reached \(total); log: \(second.logFile.path)")

        let written = try await readAll(topics.labeled, partitions: 2, brokers: broker.bootstrap)
        let ids = try written.map { try LabeledExample(bytes: $0.value ?? []).requestId }
        #expect(ids.count == total, "\(ids.count - Set(ids).count) duplicates")
        #expect(Set(ids).count == total)

        let metrics = try await HTTPGet.request(port: secondPort, path: "/metrics").body
        #expect(HTTPGet.sample(metrics, #"loop_feedback_join_total{result="duplicates"}"#) == 0)
        let dashboard = try await HTTPGet.request(port: secondPort, path: "/dashboard")
        #expect(dashboard.status == 200 && dashboard.body.contains("<svg"))
        #expect(await second.stop() == .exited(0), "\(second.logTail())")
    }

    @Test("review over HTTP: the queue lists review-routed predictions by uncertainty, a verdict becomes a review label and an audit entry")
    func reviewOverHTTP() async throws {
        let broker = try await Broker.shared()
        let directory = try temporaryDirectory("review")
        let configPath = try Self.writeConfig(prefix: broker.uniqueTopic("rv"), directory: directory)
        let config = try LoopConfig.load(path: configPath)
        let topics = config.topics.names
        try await TopicLayout(config: config).ensureTopics(kafka: KafkaConfig(brokers: broker.bootstrap), logger: testLogger)
        let producer = try KafkaProducer(config: KafkaConfig(brokers: broker.bootstrap), logger: testLogger)
        let start: Int64 = 1_700_000_000_000
        let served = [
            prediction("far", entity: "a", at: start, score: 0.3, route: .review),
            prediction("near", entity: "b", at: start + 1000, score: 0.51, route: .review),
            prediction("auto", entity: "c", at: start + 2000, score: 0.9, route: .auto),
        ]
        _ = try await producer.send(served.map {
            OutgoingRecord(topic: topics.predictions, key: Array($0.entity.utf8), value: $0.bytes)
        })
        let reviewer = APIKeys.generate(name: "ann", roles: [.reviewer])
        let viewer = APIKeys.generate(name: "vic", roles: [.viewer])
        let port = try Broker.freePort()
        let process = try Self.launch(
            config: configPath, state: directory + "/state", brokers: broker.bootstrap, group: broker.uniqueTopic("fb"),
            port: port, logDirectory: directory, apiKeys: reviewer.hashLine + ";" + viewer.hashLine)
        defer { process.kill() }
        let auth = ["Authorization": "Bearer \(reviewer.key)"]

        var queue = ""
        #expect(await waitUntil(timeout: .seconds(30)) {
            queue = (try? await HTTPGet.request(port: port, path: "/v1/reviews", headers: auth).body) ?? ""
            return queue.contains("far")
        }, "queue never filled; log: \(process.logFile.path)")
        let listed = try JSONValue.parse(Array(queue.utf8))["reviews"]?.arrayValue?.compactMap { $0["requestId"]?.stringValue }
        #expect(listed == ["near", "far"])
        #expect(try await HTTPGet.request(port: port, path: "/v1/reviews").status == 401)
        let forbidden = try await HTTPGet.request(
            port: port, method: "POST", path: "/v1/reviews/near", headers: ["Authorization": "Bearer \(viewer.key)"],
            body: #"{"label":"1"}"#)
        #expect(forbidden.status == 403)
        #expect(try await HTTPGet.request(port: port, method: "POST", path: "/v1/reviews/nope", headers: auth,
                                       body: #"{"label":"1"}"#).status == 404)
        let accepted = try await HTTPGet.request(
            port: port, method: "POST", path: "/v1/reviews/near", headers: auth, body: #"{"label":"1","note":"clear up"}"#)
        #expect(accepted.status == 202, "\(accepted.body)")

        var labeled: [LabeledExample] = []
        #expect(await waitUntil(timeout: .seconds(20)) {
            labeled = ((try? await readAll(topics.labeled, partitions: 2, brokers: broker.bootstrap)) ?? [])
                .compactMap { try? LabeledExample(bytes: $0.value ?? []) }
            return !labeled.isEmpty
        })
        #expect(labeled.map(\.requestId) == ["near"])
        #expect(labeled.first?.labelSource == .review && labeled.first?.label == true)
        let audit = try await readAll(topics.audit, partitions: 2, brokers: broker.bootstrap)
            .compactMap { try? AuditEntry(bytes: $0.value ?? []) }
        let verdict = try #require(audit.first { $0.action == "review.verdict" })
        #expect(verdict.actor == "ann" && verdict.target == "near")
        #expect(audit.contains { $0.action == "auth.failed" && $0.actor == "vic" })
        let again = try await HTTPGet.request(
            port: port, method: "POST", path: "/v1/reviews/near", headers: auth, body: #"{"label":"0"}"#)
        #expect(again.status == 409)
        #expect(await process.stop() == .exited(0), "\(process.logTail())")
    }
}

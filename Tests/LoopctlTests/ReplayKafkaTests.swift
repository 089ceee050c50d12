import Contracts
import Kafka
import Loopctl
import TestSupport
import Synchronization
import Testing

@Suite("Replay through Kafka")
struct ReplayKafkaTests {
    @Test("a CSV slice lands on the raw topic in binary mode, keyed by entity, in event-time order; a re-run repeats the ids")
    func replayToKafka() async throws {
        let topic = Broker.uniqueTopic("loop.events.raw")
        try await TestKafka.createTopics([topic])
        let config = try await TestKafka.config()
        let plan = try ReplayPlan(table: try CSVTable.parse(sampleCSV), mapping: sampleMapping)
        let sink = try KafkaEventSink(config: config, topic: topic, batchSize: 4, logger: TestKafka.logger)
        let runner = ReplayRunner(progress: ProgressDisplay(style: .silent) { _ in })

        let summary = try await runner.run(plan, to: sink)
        #expect(summary.events == plan.eventCount)
        #expect(summary.scoreRequests == 5 && summary.observations == 5 && summary.outcomes == 4 && summary.unlabeled == 1)

        let records = try await TopicReader(config: config, logger: TestKafka.logger).readAll(topic)
        #expect(records.count == plan.eventCount)
        let events = try records.map { record in
            try KafkaBinding.decode(KafkaBinding.Message(
                key: record.key, value: record.value, headers: record.headers.map { .init(name: $0.key, value: $0.value) }))
        }
        #expect(events == Array(plan.events()), "the broker holds exactly the planned events, in order")
        for (record, event) in zip(records, events) {
            #expect(record.key == Array(event.subject!.utf8), "key = subject")
            #expect(record.header("ce_id") != nil && record.header("ce_type") != nil, "binary mode: ce_ headers")
            #expect(record.header("content-type")?.value == Array("application/json".utf8))
        }
        let times = events.map { $0.time! }
        #expect(times == times.sorted())
        let requests = Dictionary(uniqueKeysWithValues: events.filter { $0.type == "loop.score_request.v1" }
            .map { ($0.dataObject["requestId"]!.stringValue!, $0.time!) })
        for outcome in events where outcome.type == "loop.outcome.v1" {
            let request = try #require(requests[outcome.dataObject["requestId"]!.stringValue!])
            #expect(outcome.time!.seconds - request.seconds == 1800)
        }

        _ = try await runner.run(plan, to: sink)
        let again = try await TopicReader(config: config, logger: TestKafka.logger).readAll(topic)
        #expect(again.count == 2 * plan.eventCount)
        let ids = again.map { String(decoding: $0.header("ce_id")!.value!, as: UTF8.self) }
        #expect(Array(ids.suffix(plan.eventCount)) == Array(ids.prefix(plan.eventCount)), "a re-run sends the same ids")
    }

    @Test("a set speed paces event time against wall time")
    func pacing() async throws {
        let topic = Broker.uniqueTopic("loop.events.raw")
        try await TestKafka.createTopics([topic])
        let config = try await TestKafka.config()
        var mapping = sampleMapping
        mapping.observations = .none
        let plan = try ReplayPlan(table: try CSVTable.parse(sampleCSV), mapping: mapping)
        let sink = try KafkaEventSink(config: config, topic: topic, logger: TestKafka.logger)
        // Event time spans 2 h (00:00 to the last outcome at 02:00): at 7200x that is about one second.
        let collected = LineCollector()
        let runner = ReplayRunner(speed: 7200, progress: ProgressDisplay(style: .lines(interval: .milliseconds(100))) { collected.add($0) })
        let clock = ContinuousClock()
        let started = clock.now
        let summary = try await runner.run(plan, to: sink)
        let elapsed = clock.now - started
        #expect(elapsed >= .milliseconds(950), "paced: took \(elapsed)")
        #expect(elapsed < .seconds(10))
        #expect(summary.events == plan.eventCount)
        let lines = collected.lines
        #expect(lines.count >= 2, "plain progress lines while it runs")
        #expect(lines.last?.contains("\(plan.eventCount)/\(plan.eventCount) events") == true)
        #expect(lines.last?.contains("done") == true)
        #expect(lines.allSatisfy { !$0.contains("\r") && $0.hasSuffix("\n") })
    }
}

/// Collects progress output from the runner.
final class LineCollector: Sendable {
    private let storage = Mutex<[String]>([])
    func add(_ line: String) { storage.withLock { $0.append(line) } }
    var lines: [String] { storage.withLock { $0 } }
}

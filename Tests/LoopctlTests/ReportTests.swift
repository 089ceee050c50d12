import ArgumentParser
import Contracts
import Foundation
import Kafka
import Loopctl
import TestSupport
import Testing

@Suite("report against the broker")
struct ReportTests {
    /// The records one test writes, kept to compute the expected figures independently.
    struct Fixture {
        var topics: Topics
        var labeled: [LabeledExample] = []
        var predictions: [Prediction] = []
    }

    static let day: Int64 = 86_400_000
    static let start: Int64 = 1_700_000_000_000

    /// Writes a small loop's worth of records to fresh topics under a unique prefix.
    static func writeFixture() async throws -> Fixture {
        var fixture = Fixture(topics: Topics(prefix: Broker.uniqueTopic("report")))
        let topics = fixture.topics
        try await TestKafka.createTopics([topics.events, topics.labeled, topics.predictions], partitions: 2)
        try await TestKafka.createTopics([topics.models, topics.monitoring, topics.deadLetters])
        var records: [OutgoingRecord] = []

        for (index, type) in ["loop.observation.v1", "loop.observation.v1", "loop.score_request.v1", "loop.outcome.v1"].enumerated() {
            records.append(OutgoingRecord(
                topic: topics.events, key: Array("e\(index)".utf8), value: Array("{}".utf8),
                headers: [KafkaHeader(key: "ce_type", value: Array(type.utf8))]))
        }

        // 50 served examples: 15 from the baseline (constant score), then v1, then v3 as champion;
        // 5 shadow examples that must not count as served. Written out of event-time order.
        var state: UInt64 = 42
        func random() -> Double {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(state >> 11) / Double(1 << 53)
        }
        for index in 0..<55 {
            let time = start + Int64(index) * 3_600_000
            let label = random() < 0.45
            let (role, version): (ModelRole, Int64?) = index >= 50 ? (.shadow, 2) : index < 15 ? (.baseline, nil)
                : index < 35 ? (.champion, 1) : (.champion, 3)
            // Informative but imperfect scores, rounded so that ties occur.
            let score = role == .baseline ? 0.3 : (((label ? 0.3 : 0) + random() * 0.7) * 10).rounded() / 10
            let prediction = Prediction(
                requestId: "r\(index)", entity: "nsw", eventTimeMs: time, modelVersion: version, role: role, score: score,
                decision: score >= 0.5, route: index % 7 == 0 ? .review : .auto, features: [FeatureValue(name: "x", value: score)])
            fixture.predictions.append(prediction)
            fixture.labeled.append(LabeledExample(
                prediction: prediction, label: label, labelSource: index % 5 == 0 ? .review : .outcome, labelDelaySeconds: 1800))
        }
        for (index, prediction) in fixture.predictions.enumerated() {
            records.append(OutgoingRecord(
                topic: topics.predictions, key: Array(prediction.entity.utf8), value: prediction.bytes, partition: Int32(index % 2)))
        }
        for (index, example) in fixture.labeled.reversed().enumerated() {
            records.append(OutgoingRecord(
                topic: topics.labeled, key: Array(example.entity.utf8), value: example.bytes, partition: Int32(index % 2)))
        }

        func version(_ number: Int64, _ status: ModelStatus, trigger: String, lineage: JSONValue, reasons: [String] = []) -> OutgoingRecord {
            let record = ModelVersionRecord(
                version: number, status: status, parent: number > 1 ? 1 : nil, trigger: trigger, createdAtMs: 1,
                reasons: reasons, lineage: lineage, artifact: [:], card: "")
            return OutgoingRecord(topic: topics.models, key: Array(ModelVersionRecord.key(version: number).utf8), value: record.bytes)
        }
        func registry(_ champion: Int64?, revision: Int64) -> OutgoingRecord {
            let state = RegistryState(champion: champion, canary: nil, canaryShare: 0, shadows: [], history: [], revision: revision)
            return OutgoingRecord(topic: topics.models, key: Array(RegistryState.key.utf8), value: state.bytes)
        }
        records += [
            version(1, .candidate, trigger: "every_labels", lineage: ["holdout": ["candidate": ["auc": 0.81], "champion": .null]]),
            version(1, .champion, trigger: "every_labels", lineage: ["holdout": ["candidate": ["auc": 0.81], "champion": .null]]),
            registry(1, revision: 1),
            version(2, .rejected, trigger: "drift_alert", lineage: ["holdout": ["candidate": ["auc": 0.7], "champion": ["auc": 0.8]]],
                    reasons: ["auc 0.700 is below the champion's 0.800"]),
            version(3, .champion, trigger: "manual", lineage: ["holdoutAUC": 0.9]),
            registry(3, revision: 2),
            version(1, .retired, trigger: "every_labels", lineage: ["holdout": ["candidate": ["auc": 0.81]]]),
        ]

        func alert(_ id: String, _ kind: MonitoringRecord.AlertKind, _ state: MonitoringRecord.AlertState, at hours: Int64, feature: String?) -> OutgoingRecord {
            let record = MonitoringRecord(
                kind: .alert, modelVersion: 1, eventTimeMs: start + hours * 3_600_000, alertKind: kind, alertState: state,
                alertId: id, feature: feature, value: 0.31, threshold: 0.25)
            return OutgoingRecord(topic: topics.monitoring, key: Array("alerts".utf8), value: record.bytes)
        }
        let snapshots = [
            MonitoringRecord(kind: .snapshot, modelVersion: 1, eventTimeMs: start + day, metrics: ["psi.nswprice": 0.1, "count.auc": 0.8]),
            MonitoringRecord(kind: .snapshot, modelVersion: 1, eventTimeMs: start + 2 * day, metrics: ["psi.nswprice": 0.31, "psi.vicprice": 0.05]),
        ]
        records += snapshots.map { OutgoingRecord(topic: topics.monitoring, key: Array("1".utf8), value: $0.bytes) }
        records += [
            alert("drift:nswprice", .drift, .open, at: 40, feature: "nswprice"),
            alert("drift:nswprice", .drift, .open, at: 41, feature: "nswprice"),
            alert("drift:nswprice", .drift, .resolved, at: 44, feature: "nswprice"),
            alert("perf:1", .performanceDrop, .open, at: 45, feature: nil),
        ]

        for (reason, offset) in [("out_of_range", 1), ("out_of_range", 2), ("malformed", 3)] {
            let letter = DeadLetter(
                reason: reason, field: nil, message: "bad", origin: "kafka", topic: topics.rawEvents, partition: 0,
                offset: Int64(offset), body: "{}", bodyEncoding: "utf8", headers: [:], rejectedAtMs: 1)
            records.append(OutgoingRecord(topic: topics.deadLetters, value: letter.bytes))
        }
        records.append(OutgoingRecord(topic: topics.deadLetters, value: Array("not a dead letter".utf8)))

        let producer = try KafkaProducer(config: try await TestKafka.config(), logger: TestKafka.logger)
        _ = try await producer.send(records)
        return fixture
    }

    /// ROC AUC by counting every positive–negative pair (ties count half).
    static func pairAUC(_ examples: [LabeledExample]) -> Double? {
        let positives = examples.filter(\.label), negatives = examples.filter { !$0.label }
        guard !positives.isEmpty, !negatives.isEmpty else { return nil }
        var wins = 0.0
        for p in positives {
            for n in negatives { wins += p.score > n.score ? 1 : p.score == n.score ? 0.5 : 0 }
        }
        return wins / Double(positives.count * negatives.count)
    }

    static func accuracy(_ examples: [LabeledExample]) -> Double {
        Double(examples.filter { $0.decision == $0.label }.count) / Double(examples.count)
    }

    @Test("the summary's counts, prequential quality, versions, promotions, alerts and PSI match the topics' contents")
    func summaryMatchesTopics() async throws {
        let fixture = try await Self.writeFixture()
        let connection = Connection(kafka: try await TestKafka.config(), topics: fixture.topics)
        let reader = TopicReader(config: connection.kafka, logger: TestKafka.logger)
        let summary = try await ReportCommand.summary(connection, reader: reader, window: 10)

        #expect(summary.events == 4)
        #expect(summary.eventsByType == ["loop.observation.v1": 2, "loop.score_request.v1": 1, "loop.outcome.v1": 1])
        #expect(summary.predictions == 55)
        #expect(summary.predictionsByRoute["review"] == fixture.predictions.filter { $0.route == .review }.count)
        #expect(summary.predictionsByModel == ["baseline": 15, "champion v1": 20, "champion v3": 15, "shadow v2": 5])
        #expect(summary.labels == 55)
        #expect(summary.labelsBySource["review"] == 11)
        #expect(summary.deadLetters == 3)
        #expect(summary.deadLettersByReason == ["out_of_range": 2, "malformed": 1])
        #expect(summary.undecodable == [fixture.topics.deadLetters: 1])

        let served = fixture.labeled.filter { $0.role != .shadow }.sorted { $0.eventTimeMs < $1.eventTimeMs }
        let servedAUC = try #require(Self.pairAUC(served))
        #expect(summary.served.count == 50)
        #expect(abs(try #require(summary.served.auc) - servedAUC) < 1e-12)
        #expect(summary.served.accuracy == Self.accuracy(served))
        let v1 = served.filter { $0.modelVersion == 1 }
        #expect(abs(try #require(summary.servedByModel["champion v1"]?.auc) - Self.pairAUC(v1)!) < 1e-12)
        let baseline = served.filter { $0.role == .baseline }
        #expect(summary.baselinePolicy.count == 15)
        #expect(summary.baselinePolicy.auc == Self.pairAUC(baseline))
        #expect(summary.baselinePolicy.accuracy == Self.accuracy(baseline))
        let positives = served.filter(\.label).count
        let majorityPositive = positives * 2 > served.count
        #expect(summary.constantBaselineDecision == majorityPositive)
        #expect(summary.constantBaseline.auc == 0.5)
        #expect(summary.constantBaseline.accuracy == Double(majorityPositive ? positives : served.count - positives) / Double(served.count))

        let lastWindow = Array(served.suffix(10))
        let last = try #require(summary.qualitySeries.last)
        #expect(last.eventTimeMs == served.last!.eventTimeMs)
        #expect(abs(try #require(last.auc) - Self.pairAUC(lastWindow)!) < 1e-12)
        #expect(last.accuracy == Self.accuracy(lastWindow))
        #expect(summary.qualitySeries.first?.eventTimeMs == served[9].eventTimeMs)

        #expect(summary.models.map(\.version) == [1, 2, 3])
        #expect(summary.models.map(\.outcome) == ["promoted", "rejected", "promoted"])
        #expect(summary.models.map(\.status) == [.retired, .rejected, .champion])
        #expect(summary.models.map(\.holdoutAUC) == [0.81, 0.7, 0.9])
        #expect(summary.models[1].championHoldoutAUC == 0.8)
        #expect(summary.models[1].reasons == ["auc 0.700 is below the champion's 0.800"])
        #expect(summary.models[1].trigger == "drift_alert")
        #expect(summary.promotions == [
            ReplaySummary.Promotion(version: 1, eventTimeMs: Self.start + 15 * 3_600_000),
            ReplaySummary.Promotion(version: 3, eventTimeMs: Self.start + 35 * 3_600_000),
        ])

        #expect(summary.alerts.map(\.alertId) == ["drift:nswprice", "perf:1"], "one alert per id, resolutions not counted")
        #expect(summary.alerts.first?.eventTimeMs == Self.start + 40 * 3_600_000)
        #expect(summary.psiByFeature["nswprice"]?.map(\.value) == [0.1, 0.31])
        #expect(summary.psiByFeature["vicprice"]?.map(\.eventTimeMs) == [Self.start + 2 * Self.day])
        #expect(summary.psiByFeature.count == 2)

        let text = summary.text
        #expect(text.contains("dead letters  3 (out_of_range 2, malformed 1)"))
        #expect(text.contains("rejected"))

        let html = HTMLReport.html(summary)
        #expect(html.contains("<svg"))
        #expect(!html.lowercased().contains("<script"))
        #expect(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"))
        #expect(!html.lowercased().contains("@import") && !html.lowercased().contains("url("))
        #expect(html.contains(">v1</text>") && html.contains(">v3</text>"), "promotion markers")
        #expect(html.contains("nswprice") && html.contains("vicprice"))
        #expect(html.contains("auc 0.700 is below the champion&#39;s 0.800"), "text is HTML-escaped")
    }

    @Test("the report command waits for labels, prints the summary and writes the HTML file")
    func commandWritesReport() async throws {
        let fixture = try await Self.writeFixture()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(Broker.uniqueTopic("report-out"))
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("nested/report.html").path
        let command = try ReportCommand.parse([
            "--brokers", try await Broker.shared().bootstrap, "--topic-prefix", fixture.topics.prefix, "--out", path,
            "--wait-for-labels", "55", "--timeout", "30",
        ])
        try await command.run()
        let html = try String(contentsOfFile: path, encoding: .utf8)
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.contains("<svg"))

        let reader = TopicReader(config: try await TestKafka.config(), logger: TestKafka.logger)
        let clock = ContinuousClock()
        let started = clock.now
        var seen: [Int64] = []
        let count = try await TopicCount.wait(
            for: 56, in: fixture.topics.labeled, reader: reader, timeout: .seconds(1), interval: .milliseconds(200)
        ) { seen.append($0) }
        #expect(count == 55, "gives up at the timeout with what the topic holds")
        #expect(!seen.isEmpty && seen.allSatisfy { $0 == 55 }, "polls until the deadline, reporting each count")
        #expect(clock.now - started < .seconds(30), "gives up near its 1 s timeout, not waiting for the 56th record (the bound leaves room for a loaded CI machine)")
        #expect(try await TopicCount.records(in: fixture.topics.prefix + ".missing", reader: reader) == 0)
    }

    @Test("holdout AUC is looked up leniently in free-form lineage")
    func lenientHoldoutAUC() {
        #expect(ReplaySummary.holdoutAUC(["holdout": ["candidate": ["AUC": 0.8]]], of: "candidate") == 0.8)
        #expect(ReplaySummary.holdoutAUC(["holdout": ["candidate": ["rocAUC": 0.7]]], of: "candidate") == 0.7)
        #expect(ReplaySummary.holdoutAUC(["holdout": ["candidateAUC": 0.6, "championAuc": 0.5]], of: "champion") == 0.5)
        #expect(ReplaySummary.holdoutAUC(["holdout": ["auc": 0.65]], of: "candidate") == 0.65)
        #expect(ReplaySummary.holdoutAUC(["metrics": ["holdout": ["auc": 0.55]]], of: "candidate") == 0.55)
        #expect(ReplaySummary.holdoutAUC(["holdout_auc": 0.9], of: "candidate") == 0.9)
        #expect(ReplaySummary.holdoutAUC(["holdout": ["candidate": ["auc": "high"]]], of: "candidate") == nil)
        #expect(ReplaySummary.holdoutAUC(.string("not an object"), of: "candidate") == nil)
        #expect(ReplaySummary.holdoutAUC(["holdout": ["auc": 0.65]], of: "champion") == nil)
    }
}

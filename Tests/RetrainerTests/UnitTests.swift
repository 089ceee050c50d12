import Contracts
import Foundation
import Kafka
import Learning
import Testing
@testable import Retrainer

@Suite("Stream triggers and coalescing")
struct TriggerTests {
    @Test("event-time and every-N triggers fire at the same examples however the input is chunked")
    func sameFiringPointsForAnyChunking() throws {
        let config = try Fixture.config(retraining: "everyEventTime: 1h\neveryLabels: 50")
        let examples = Fixture.examples(count: 400, spacingMs: 37_000)
        func firings(chunk: Int) throws -> [String] {
            let store = try TrainingStore(path: ":memory:")
            let incoming = examples.enumerated().map { IncomingLabel(example: $1, partition: 0, offset: Int64($0)) }
            var fired: [String] = []
            var start = 0
            while start < incoming.count {
                let end = min(start + chunk, incoming.count)
                var position = start
                while position < end {
                    let result = try store.ingest(
                        incoming[position..<end], topic: "t", triggers: StreamTriggers(policy: config.retraining), nowMs: 0)
                    position += result.consumed
                    fired += result.fired.map(\.id)
                }
                start = end
            }
            return fired
        }
        let slow = try firings(chunk: 1)
        let fast = try firings(chunk: 400)
        let medium = try firings(chunk: 33)
        #expect(slow == fast)
        #expect(slow == medium)
        // 400 examples × 37 s span ~4.1 h: the hour boundaries after the first example fire once each.
        let eventTimeFirings = slow.filter { $0.hasPrefix("event_time:") }
        #expect(eventTimeFirings.count == 4)
        #expect(slow.filter { $0.hasPrefix("every_labels:") } == (1...8).map { "every_labels:\($0 * 50)" })
    }

    @Test("duplicates and late examples fire nothing; a gap of several periods fires once")
    func duplicatesAndGaps() throws {
        let triggers = StreamTriggers(everyLabels: nil, everyEventTimeMs: Fixture.hourMs)
        var state = StreamTriggers.State()
        let start = Fixture.startMs
        #expect(triggers.observe(eventTimeMs: start + 10, state: &state, nowMs: 0).isEmpty)
        #expect(triggers.observe(eventTimeMs: start - 5 * Fixture.hourMs, state: &state, nowMs: 0).isEmpty)
        let fired = triggers.observe(eventTimeMs: start + 5 * Fixture.hourMs + 1, state: &state, nowMs: 0)
        #expect(fired.map(\.cutoffEventTimeMs) == [start + 5 * Fixture.hourMs])
        #expect(triggers.observe(eventTimeMs: start + 5 * Fixture.hourMs + 2, state: &state, nowMs: 0).isEmpty)

        let store = try TrainingStore(path: ":memory:")
        let example = Fixture.examples(count: 1)[0]
        let first = try store.ingest([IncomingLabel(example: example, partition: 0, offset: 0)][...], topic: "t",
                                     triggers: StreamTriggers(everyLabels: 1, everyEventTimeMs: nil), nowMs: 0)
        #expect(first.fired.count == 1)
        let again = try store.ingest([IncomingLabel(example: example, partition: 0, offset: 1)][...], topic: "t",
                                     triggers: StreamTriggers(everyLabels: 1, everyEventTimeMs: nil), nowMs: 0)
        #expect(again.duplicates == 1 && again.fired.isEmpty)
    }

    @Test("triggers arriving while a run is in progress coalesce into one waiting run")
    func coalescing() {
        func trigger(_ id: String) -> Trigger { Trigger(id: id, kind: .manual, reason: id, requestedAtMs: 0) }
        var queue = TriggerQueue()
        #expect(queue.enqueue(trigger("a")) == .scheduled)
        #expect(queue.begin()?.map(\.id) == ["a"])
        #expect(queue.begin() == nil)
        #expect(queue.enqueue(trigger("b")) == .coalesced)
        #expect(queue.enqueue(trigger("c")) == .coalesced)
        #expect(queue.enqueue(trigger("b")) == .coalesced)
        #expect(queue.begin() == nil)
        queue.end()
        #expect(queue.begin()?.map(\.id) == ["b", "c"])
        queue.end()
        #expect(queue.begin() == nil)
        #expect(queue.enqueue(trigger("d")) == .scheduled)
    }
}

@Suite("Training store")
struct TrainingStoreTests {
    @Test("examples are deduplicated by requestId, offsets stored with them, training set by last N and last T")
    func dedupeOffsetsAndSelection() throws {
        let path = try Fixture.temporaryDirectory() + "/store.sqlite"
        let examples = Fixture.examples(count: 100, spacingMs: Fixture.hourMs)
        do {
            let store = try TrainingStore(path: path)
            let incoming = examples.enumerated().map { IncomingLabel(example: $1, partition: 0, offset: Int64($0)) }
            let replayed = examples.prefix(10).enumerated().map { IncomingLabel(example: $1, partition: 0, offset: Int64(100 + $0)) }
            let unreadable = IncomingLabel(example: nil, partition: 1, offset: 41)
            let triggers = StreamTriggers(everyLabels: nil, everyEventTimeMs: nil)
            let result = try store.ingest((incoming + replayed + [unreadable])[...], topic: "labeled", triggers: triggers, nowMs: 0)
            #expect(result.inserted == 100 && result.duplicates == 10 && result.unreadable == 1)
        }
        let reopened = try TrainingStore(path: path)
        #expect(try reopened.exampleCount() == 100)
        #expect(try reopened.nextOffsets(topic: "labeled") == [
            .init(topic: "labeled", partition: 0): 110, .init(topic: "labeled", partition: 1): 42,
        ])
        let lastTwenty = try reopened.trainingExamples(cutoffMs: nil, lastExamples: 20, lastEventTimeMs: nil)
        #expect(lastTwenty.map(\.requestId) == (80..<100).map { "r-\($0)" })
        let lastDay = try reopened.trainingExamples(cutoffMs: nil, lastExamples: nil, lastEventTimeMs: 24 * Fixture.hourMs)
        #expect(lastDay.map(\.requestId) == (76..<100).map { "r-\($0)" })
        let beforeCutoff = try reopened.trainingExamples(
            cutoffMs: Fixture.startMs + 50 * Fixture.hourMs, lastExamples: 5, lastEventTimeMs: 24 * Fixture.hourMs)
        #expect(beforeCutoff.map(\.requestId) == (45..<50).map { "r-\($0)" })
        #expect(beforeCutoff.first?.offset == 45)
        #expect(beforeCutoff.first?.features["x1"] == .some(examples[45].features[0].value))
    }
}

@Suite("Evaluation gate")
struct GateTests {
    func stored(_ examples: [LabeledExample]) -> [StoredExample] {
        examples.enumerated().map { index, example in
            StoredExample(
                requestId: example.requestId, eventTimeMs: example.eventTimeMs, label: example.label,
                features: Dictionary(uniqueKeysWithValues: example.features.map { ($0.name, $0.value) }),
                partition: 0, offset: Int64(index))
        }
    }

    @Test("a candidate trained on the current concept beats a stale champion; a worse one is rejected with reasons")
    func acceptsBetterRejectsWorse() throws {
        let config = try Fixture.config(retraining: "holdoutShare: 0.25\ngate: { metric: auc, minHoldout: 200, minImprovement: 0.01, maxCalibrationError: 0.15 }")
        let trainer = ModelTrainer(config: config)
        let current = stored(Fixture.examples(count: 2000, weights: (2, -1)))
        let stale = stored(Fixture.examples(count: 2000, weights: (-1, 2), seed: 99))

        let staleChampion = try trainer.train(stale, champion: nil).artifact
        let better = try trainer.train(current, champion: staleChampion)
        #expect(better.verdict.passed, "\(better.verdict.reasons)")
        #expect(better.holdoutCount == 500 && better.trainCount == 1500)
        #expect((better.verdict.improvement ?? 0) > 0.3)
        #expect(better.champion != nil)

        // The same newest holdout (current concept), but the older part comes from the stale concept:
        // the candidate learns the stale concept and must lose to the good champion.
        let driftedHistory = stored(
            Fixture.examples(count: 1500, weights: (-1, 2), seed: 99) + Fixture.examples(count: 500, from: 1500, weights: (2, -1)))
        let worse = try trainer.train(driftedHistory, champion: better.artifact)
        #expect(!worse.verdict.passed)
        #expect(worse.verdict.reasons.contains { $0.hasPrefix("auc improves by -") && $0.contains("less than minImprovement") })

        let tooSmall = try trainer.train(Array(current.prefix(400)), champion: nil)
        #expect(!tooSmall.verdict.passed)
        #expect(tooSmall.verdict.reasons.contains("holdout has 100 examples, fewer than minHoldout 200"))
    }

    @Test("a version record carries the lineage the issue lists and a model card summarizing it")
    func lineageAndCard() throws {
        let config = try Fixture.config(retraining: "holdoutShare: 0.25\nl2: 0.5\ngate: { metric: auc, minHoldout: 100 }")
        let trainer = ModelTrainer(config: config)
        let examples = stored(Fixture.examples(count: 800))
        let champion = try trainer.train(stored(Fixture.examples(count: 800, weights: (1, 1), seed: 3)), champion: nil).artifact
        let result = try trainer.train(examples, champion: champion)
        let trigger = Trigger(id: "manual:x", kind: .manual, reason: "new data reviewed", requestedAtMs: 0, actor: "ops")
        let record = try VersionRecordBuilder.record(
            version: 4, parent: 3, triggers: [trigger], result: result, policy: config.retraining, labeledTopic: "loop.labeled",
            cutoffMs: nil, deployment: "test", createdAtMs: Fixture.startMs)
        #expect(record.version == 4 && record.parent == 3 && record.trigger == "manual")
        let lineage = record.lineage
        #expect(lineage["triggers"]?.arrayValue?.first?["reason"]?.stringValue == "new data reviewed")
        #expect(lineage["data"]?["offsets"]?["0"] == ["from": .int(0), "to": .int(799)])
        #expect(lineage["data"]?["fromEventTimeMs"]?.int64Value == examples.first?.eventTimeMs)
        #expect(lineage["data"]?["toEventTimeMs"]?.int64Value == examples.last?.eventTimeMs)
        #expect(lineage["examples"]?["train"]?.int64Value == 600 && lineage["examples"]?["holdout"]?.int64Value == 200)
        let positives = Int64(examples.filter(\.label).count)
        #expect(lineage["classBalance"]?["positives"]?.int64Value == positives)
        #expect(lineage["hyperParameters"]?["l2"]?.doubleValue == 0.5)
        #expect(lineage["holdout"]?["candidate"]?["auc"]?.doubleValue == result.candidate.auc)
        #expect(lineage["holdout"]?["champion"]?["auc"]?.doubleValue == result.champion?.auc)
        #expect(lineage["holdout"]?["championVersion"]?.int64Value == 3)
        #expect(lineage["featureSchemaHash"]?.stringValue == result.artifact.schema.hash)
        // The per-feature training summaries drift detection compares against travel in the artifact.
        #expect(record.artifact["training"]?["features"]?.arrayValue?.count == 2)
        let artifact = try ModelArtifact.decode(json: Data(record.artifact.canonicalBytes()))
        #expect(artifact == result.artifact)
        for text in ["# Model card: test version 4", "new data reviewed", "| ROC AUC |", "| x1 |", "Parent:** version 3"] {
            #expect(record.card.contains(text), "card lacks \(text)")
        }
    }

    @Test("log loss, cost and calibration checks")
    func otherMetrics() {
        func report(auc: Double?, logLoss: Double, meanCost: Double, ece: Double, count: Int = 500) -> QualityReport {
            // Scores of 0.5 on half positives are perfectly calibrated; 0.5 + ece miscalibrates by ece.
            let scores = [Double](repeating: 0.5 + ece, count: 10)
            var base = Metrics.report(scores: scores, labels: (0..<10).map { $0 % 2 == 0 })
            base.count = count
            base.auc = auc
            base.logLoss = logLoss
            base.meanCost = meanCost
            return base
        }
        let logLossGate = PromotionGate(metric: .logLoss, minHoldout: 100, minImprovement: 0.01, maxCalibrationError: 0.1)
        #expect(logLossGate.evaluate(candidate: report(auc: 0.7, logLoss: 0.50, meanCost: 0, ece: 0.0),
                                     champion: report(auc: 0.7, logLoss: 0.55, meanCost: 0, ece: 0.0)).passed)
        #expect(!logLossGate.evaluate(candidate: report(auc: 0.7, logLoss: 0.55, meanCost: 0, ece: 0.0),
                                      champion: report(auc: 0.7, logLoss: 0.555, meanCost: 0, ece: 0.0)).passed)
        let costGate = PromotionGate(metric: .cost, minHoldout: 100, minImprovement: 0, maxCalibrationError: 0.1)
        #expect(costGate.evaluate(candidate: report(auc: nil, logLoss: 1, meanCost: 0.2, ece: 0.0),
                                  champion: report(auc: nil, logLoss: 1, meanCost: 0.3, ece: 0.0)).passed)
        let miscalibrated = costGate.evaluate(candidate: report(auc: 0.9, logLoss: 0.3, meanCost: 0.1, ece: 0.2), champion: nil)
        #expect(!miscalibrated.passed)
        #expect(miscalibrated.reasons.contains { $0.hasPrefix("calibration error 0.2000 exceeds") })
    }
}

@Suite("Registry transitions")
struct RegistryBookTests {
    func record(_ version: Int64) -> ModelVersionRecord {
        ModelVersionRecord(
            version: version, status: .candidate, parent: nil, trigger: "manual", createdAtMs: 0, reasons: [],
            lineage: [:], artifact: [:], card: "")
    }

    @Test("promotion keeps history, canaries replace canaries, rollback restores the previous champion")
    func transitions() throws {
        var book = RegistryBook()
        book.apply(book.admitting(record(1), passed: true, canaryShare: 0))
        #expect(book.state.champion == 1 && book.versions[1]?.status == .champion)
        book.apply(book.admitting(record(2), passed: false, canaryShare: 0))
        #expect(book.state.champion == 1 && book.versions[2]?.status == .rejected && book.state.revision == 1)
        book.apply(book.admitting(record(3), passed: true, canaryShare: 0.1))
        #expect(book.state.canary == 3 && book.state.canaryShare == 0.1)
        book.apply(book.admitting(record(4), passed: true, canaryShare: 0.1))
        #expect(book.state.canary == 4 && book.versions[3]?.status == .retired)
        book.apply(try book.promoting(4, reason: "looks good"))
        #expect(book.state.champion == 4 && book.state.canary == nil && book.state.history == [1])
        #expect(book.versions[1]?.status == .retired)
        #expect(throws: RetrainerError.self) { try book.promoting(4, reason: "again") }
        #expect(throws: RetrainerError.self) { try book.promoting(9, reason: "missing") }

        book.apply(try book.rollingBack(reason: "bad canary"))
        #expect(book.state.champion == 1 && book.state.history == [])
        #expect(book.versions[1]?.status == .champion && book.versions[4]?.status == .retired)
        #expect(throws: RetrainerError.self) { try book.rollingBack(reason: "nothing left") }
        #expect(book.nextVersion == 5)
    }
}

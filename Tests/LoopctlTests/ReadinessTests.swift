import Contracts
import Learning
import Loopctl
import Testing

@Suite("Readiness checklist")
struct ReadinessTests {
    /// Labeled examples whose scores separate the classes well, decided at 0.5.
    func labeled(count: Int, version: Int64?, good: Bool, startMs: Int64 = 0) -> [LabeledExample] {
        (0..<count).map { index in
            let label = index % 2 == 0
            let score = good ? (label ? 0.8 : 0.2) + Double(index % 7) / 100 : 0.5 + Double(index % 7) / 100 - (label ? 0.05 : 0)
            let prediction = Prediction(
                requestId: "r\(index)", entity: "e", eventTimeMs: startMs + Int64(index) * 1000, modelVersion: version,
                role: version == nil ? .baseline : .champion, score: score, decision: score >= 0.5, route: .auto,
                features: [], latencyMs: Double(index % 10))
            return LabeledExample(prediction: prediction, label: label, labelSource: .outcome, labelDelaySeconds: 1800)
        }
    }

    @Test("a good model beats the baseline, is calibrated enough and its trend holds: business value, quality and trend pass")
    func goodModelPasses() {
        var input = ReadinessChecklist.Input()
        input.labeled = labeled(count: 300, version: 4, good: true)
        input.baselineScore = 0.42
        let items = Dictionary(uniqueKeysWithValues: ReadinessChecklist.evaluate(input).map { ($0.check, $0) })
        let business = items["business value"]!
        #expect(business.status == .pass)
        #expect(business.numbers["baselineCost"] == 0.5, "always negative is wrong on every positive")
        #expect(business.numbers["cost"] == 0)
        #expect(items["output quality"]!.status == .warn || items["output quality"]!.status == .pass)
        #expect(items["output quality"]!.numbers["auc.v4"] == 1)
        #expect(items["success trend"]!.status == .pass)
        #expect(items["user feedback"]!.status == .warn, "no review verdicts yet")
    }

    @Test("a model worse than the baseline fails business value; no model fails quality")
    func badModelFails() {
        var input = ReadinessChecklist.Input()
        input.labeled = labeled(count: 100, version: nil, good: false)
        input.baselineScore = 0.42
        let items = Dictionary(uniqueKeysWithValues: ReadinessChecklist.evaluate(input).map { ($0.check, $0) })
        #expect(items["business value"]!.status == .fail)
        #expect(items["output quality"]!.status == .fail)
        #expect(items["output quality"]!.summary.contains("no model version"))
    }

    @Test("data continuity counts DLQ share, late events and gaps; feasibility reads latency percentiles")
    func continuityAndLatency() {
        var input = ReadinessChecklist.Input()
        input.events = (0..<100).map { ReadinessChecklist.EventFact(partition: 0, eventTimeMs: Int64($0) * 1_800_000) }
        input.events.append(ReadinessChecklist.EventFact(partition: 0, eventTimeMs: 0))
        input.deadLetters = 10
        input.predictions = (1...100).map { index in
            Prediction(requestId: "r\(index)", entity: "e", eventTimeMs: 0, modelVersion: 1, role: .champion, score: 0.5,
                       decision: true, route: index <= 5 ? .review : .auto, features: [], latencyMs: Double(index))
        }
        let items = Dictionary(uniqueKeysWithValues: ReadinessChecklist.evaluate(input).map { ($0.check, $0) })
        let continuity = items["data continuity"]!
        #expect(continuity.numbers["lateShare"] == 1.0 / 101)
        #expect(continuity.numbers["dlqShare"] == 10.0 / 111)
        #expect(continuity.numbers["maxGapSeconds"] == 1800)
        #expect(continuity.status == .fail, "9% dead letters")
        let feasibility = items["production feasibility"]!
        #expect(feasibility.numbers["p50Ms"] == 50)
        #expect(feasibility.numbers["p99Ms"] == 99)
        #expect(feasibility.status == .pass)
        #expect(items["user feedback"]!.numbers["reviewShare"] == 0.05)
        let line = ReadinessChecklist.text(ReadinessChecklist.evaluate(input)).split(separator: "\n").first { $0.contains("data continuity") }
        #expect(line?.hasPrefix("FAIL ") == true)
    }
}

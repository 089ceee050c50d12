import Contracts
import Feedback
import Foundation
import Learning
import Testing

@Suite("monitoring")
struct MonitorTests {
    static let thresholds = DriftThresholds(
        psi: 0.25, ks: 0.2, chiSquaredPValue: 0.001, scorePSI: 0.25, performanceDrop: 0.05,
        labelStarvation: TimeSpan(seconds: 86_400))

    static func monitor(windowCount: Int = 500, minimumSamples: Int = 100) throws -> Monitor {
        try Monitor(settings: MonitorSettings(
            windowCount: windowCount, windowSeconds: 7 * 86_400, threshold: 0.5, costs: DecisionCosts(),
            drift: thresholds, chunkSeconds: 3600, minimumSamples: minimumSamples))
    }

    /// Version `version` trained on `x` uniform in [0, 1] (deciles), scores likewise.
    static func model(version: Int64, holdoutAUC: Double? = nil) throws -> ModelVersionRecord {
        let deciles = BinnedDistribution(edges: (1...9).map { Double($0) / 10 }, proportions: [Double](repeating: 0.1, count: 10))
        let training = TrainingSummary(
            exampleCount: 1000, positiveCount: 500,
            features: [FeatureSummary(name: "x", count: 1000, numeric: NumericSummary(mean: 0.5, std: 0.29, min: 0, max: 1, bins: deciles))],
            scores: ScoreSummary(count: 1000, mean: 0.5, bins: deciles))
        let artifact = ModelArtifact(
            schema: FeatureSchema(features: [FeatureSpec(name: "x", kind: .numeric)]), training: training,
            body: .logisticRegression(LogisticRegressionModel(
                intercept: 0, coefficients: [[1]], means: [0.5], scales: [0.29], l2: 1, classWeight: "none",
                iterations: 10, converged: true)))
        let lineage: JSONValue = holdoutAUC.map { ["holdout": ["candidate": ["auc": .double($0)]]] } ?? [:]
        return ModelVersionRecord(
            version: version, status: .champion, parent: nil, trigger: "manual", createdAtMs: 0, reasons: [],
            lineage: lineage, artifact: try JSONValue.parse(Array(artifact.jsonData())), card: "")
    }

    static func predictions(_ count: Int, from start: Int, x: (Int) -> Double) -> [Prediction] {
        (start..<start + count).map { i in
            prediction("p\(i)", at: Int64(i) * 1000, score: x(i), features: [FeatureValue(name: "x", value: x(i))])
        }
    }

    @Test("an alert opens once while its condition holds, resolves once when it stops; unevaluated conditions keep their state")
    func alertDeduplication() {
        var book = AlertBook()
        let firing = AlertCondition(kind: .drift, version: 3, feature: "x", value: 0.4, threshold: 0.25, firing: true)
        var clear = firing
        clear.firing = false
        clear.value = 0.1
        let opened = book.evaluate([firing], eventTimeMs: 1)
        #expect(opened.count == 1 && opened[0].alertState == .open && opened[0].alertId == "drift:3:x")
        #expect(book.evaluate([firing], eventTimeMs: 2).isEmpty)
        #expect(book.evaluate([firing, firing], eventTimeMs: 3).isEmpty)
        #expect(book.evaluate([], eventTimeMs: 4).isEmpty)
        #expect(book.open.count == 1)
        let resolved = book.evaluate([clear], eventTimeMs: 5)
        #expect(resolved.count == 1 && resolved[0].alertState == .resolved && resolved[0].alertId == "drift:3:x")
        #expect(book.evaluate([clear], eventTimeMs: 6).isEmpty)
        #expect(book.open.isEmpty)
        #expect(book.evaluate([firing], eventTimeMs: 7).map(\.alertState) == [.open], "a new episode is a new alert")
        let restored = AlertBook(open: Array(book.open.values))
        var reopened = restored
        #expect(reopened.evaluate([firing], eventTimeMs: 8).isEmpty, "restored open alerts are not raised again")
    }

    @Test("drift against the artifact's training baseline: PSI by hand, one alert per condition, resolved when the inputs come back")
    func driftAlerts() throws {
        let monitor = try Self.monitor()
        monitor.register(model: try Self.model(version: 1))
        monitor.observe(predictions: Self.predictions(500, from: 0) { Double($0 % 100) / 100 + 0.005 })
        let calm = monitor.snapshot(counters: JoinCounters(), reviewQueue: 0)
        let calmDrift = try #require(calm.versions.first?.drift.first)
        #expect(calmDrift.feature == "x" && calmDrift.count == 500)
        #expect(calmDrift.psi < 1e-9)
        #expect(calm.alertChanges.filter { $0.alertKind == .drift }.isEmpty)

        monitor.observe(predictions: Self.predictions(500, from: 500) { _ in 0.95 })
        let shifted = monitor.snapshot(counters: JoinCounters(), reviewQueue: 0)
        let drift = try #require(shifted.versions.first?.drift.first)
        // Every value in the last decile: 9 bins observed at the floor 1e-4, one at 1.0.
        let expected = 9 * (1e-4 - 0.1) * log(1e-4 / 0.1) + (1 - 0.1) * log(1 / 0.1)
        #expect(abs(drift.psi - expected) < 1e-9)
        #expect(abs((drift.ks ?? 0) - 0.9) < 1e-9)
        let opened = shifted.alertChanges.filter { $0.alertKind == .drift }
        #expect(Set(opened.compactMap(\.feature)) == ["x", "score"])
        #expect(opened.allSatisfy { $0.alertState == .open && $0.modelVersion == 1 })

        monitor.observe(predictions: Self.predictions(10, from: 1000) { _ in 0.95 })
        #expect(monitor.snapshot(counters: JoinCounters(), reviewQueue: 0).alertChanges.filter { $0.alertKind == .drift }.isEmpty,
                "still drifting: no second alert")

        monitor.observe(predictions: Self.predictions(500, from: 1010) { Double($0 % 100) / 100 + 0.005 })
        let back = monitor.snapshot(counters: JoinCounters(), reviewQueue: 0)
        let resolved = back.alertChanges.filter { $0.alertKind == .drift }
        #expect(resolved.count == 2 && resolved.allSatisfy { $0.alertState == .resolved })
        #expect(back.openAlerts.filter { $0.alertKind == .drift }.isEmpty)
    }

    @Test("quality per version: the champion and a shadow challenger are judged on the same labels")
    func qualityPerVersion() throws {
        let monitor = try Self.monitor(windowCount: 1000)
        var random = SystemRandomNumberGenerator()
        var examples: [LabeledExample] = []
        var championScores: [Double] = []
        var shadowScores: [Double] = []
        var labels: [Bool] = []
        for i in 0..<400 {
            let label = Bool.random(using: &random)
            let champion = min(max((label ? 0.65 : 0.35) + Double.random(in: -0.3...0.3, using: &random), 0), 1)
            let shadow = min(max((label ? 0.55 : 0.45) + Double.random(in: -0.3...0.3, using: &random), 0), 1)
            let served = prediction("q\(i)", at: Int64(i) * 1000, score: champion, version: 1,
                                    challengers: [ChallengerScore(modelVersion: 2, role: .shadow, score: shadow)])
            examples.append(LabeledExample(prediction: served, label: label, labelSource: .outcome, labelDelaySeconds: 30))
            championScores.append(champion)
            shadowScores.append(shadow)
            labels.append(label)
        }
        monitor.observe(labeled: examples)
        let snapshot = monitor.snapshot(counters: JoinCounters(), reviewQueue: 0)
        let byVersion = Dictionary(uniqueKeysWithValues: snapshot.versions.map { ($0.version, $0) })
        let champion = try #require(byVersion[1])
        let shadow = try #require(byVersion[2])
        #expect(champion.countWindow.count == 400 && shadow.countWindow.count == 400)
        let exactChampion = Self.pairCountAUC(scores: championScores, labels: labels)
        let exactShadow = Self.pairCountAUC(scores: shadowScores, labels: labels)
        #expect(abs((champion.countWindow.auc ?? 0) - exactChampion) <= champion.countWindow.aucErrorBound + 1e-12)
        #expect(abs((shadow.countWindow.auc ?? 0) - exactShadow) <= shadow.countWindow.aucErrorBound + 1e-12)
        #expect(abs(champion.countWindow.brier - Metrics.brier(scores: championScores, labels: labels)) < 1e-9)
        #expect(champion.timeWindow.count == 400)
        #expect(snapshot.records.count == 2 && snapshot.records.allSatisfy { $0.kind == .snapshot })
        #expect(snapshot.labelDelayCounts[0] == 400, "30 s delays fall in the first bin")
    }

    /// ROC AUC by brute force: the share of (positive, negative) pairs ranked correctly, ties half.
    static func pairCountAUC(scores: [Double], labels: [Bool]) -> Double {
        var correct = 0.0
        var pairs = 0.0
        for (p, positive) in zip(scores, labels) where positive {
            for (n, negative) in zip(scores, labels) where !negative {
                pairs += 1
                correct += p > n ? 1 : p == n ? 0.5 : 0
            }
        }
        return correct / pairs
    }

    @Test("CBPE on a calibrated stream estimates AUC and accuracy within tolerance, and reports its error once labels arrive")
    func performanceEstimation() throws {
        let monitor = try Self.monitor(windowCount: 5000, minimumSamples: 500)
        var generator = SplitMixGenerator(seed: 7)
        var served: [Prediction] = []
        var examples: [LabeledExample] = []
        for i in 0..<4000 {
            let score = Double.random(in: 0...1, using: &generator)
            let label = Double.random(in: 0...1, using: &generator) < score
            let p = prediction("c\(i)", at: Int64(i) * 500, score: score)
            served.append(p)
            examples.append(LabeledExample(prediction: p, label: label, labelSource: .outcome, labelDelaySeconds: 60))
        }
        monitor.observe(predictions: served)
        let unlabeled = try #require(monitor.snapshot(counters: JoinCounters(), reviewQueue: 0).versions.first?.chunks.first)
        #expect(unlabeled.labeled == 0 && unlabeled.aucError == nil)
        // For uniform calibrated scores the expected AUC is 5/6 and the expected accuracy 3/4.
        #expect(abs((unlabeled.estimatedAUC ?? 0) - 5.0 / 6.0) < 0.02)
        #expect(abs(unlabeled.estimatedAccuracy - 0.75) < 0.02)
        monitor.observe(labeled: examples)
        let labeled = try #require(monitor.snapshot(counters: JoinCounters(), reviewQueue: 0).versions.first?.chunks.first)
        let actual = try #require(Metrics.rocAUC(scores: served.map(\.score), labels: examples.map(\.label)))
        #expect(labeled.labeled == 4000 && abs((labeled.actualAUC ?? 0) - actual) < 1e-12)
        let error = try #require(labeled.aucError)
        #expect(abs(error) < 0.03)
        #expect(abs(labeled.accuracyError ?? 1) < 0.03)
    }

    @Test("label starvation opens when no label arrived for the configured event time, and resolves with the next label")
    func labelStarvation() throws {
        let monitor = try Self.monitor()
        monitor.observe(predictions: [prediction("s0", at: 0)])
        #expect(monitor.snapshot(counters: JoinCounters(), reviewQueue: 0).alertChanges.isEmpty)
        monitor.observe(predictions: [prediction("s1", at: 2 * 86_400_000)])
        let starved = monitor.snapshot(counters: JoinCounters(), reviewQueue: 0).alertChanges
        #expect(starved.map(\.alertKind) == [.labelStarvation] && starved.first?.alertState == .open)
        #expect(monitor.snapshot(counters: JoinCounters(), reviewQueue: 0).alertChanges.isEmpty)
        monitor.observe(labeled: [LabeledExample(prediction: prediction("s1", at: 2 * 86_400_000), label: true,
                                                 labelSource: .outcome, labelDelaySeconds: 10)])
        let fed = monitor.snapshot(counters: JoinCounters(), reviewQueue: 0).alertChanges
        #expect(fed.map(\.alertState) == [.resolved])
    }

    @Test("a performance drop below the lineage's holdout AUC opens an alert")
    func performanceDrop() throws {
        let monitor = try Self.monitor(windowCount: 200, minimumSamples: 100)
        monitor.register(model: try Self.model(version: 1, holdoutAUC: 0.9))
        var examples: [LabeledExample] = []
        for i in 0..<200 {
            let served = prediction("d\(i)", at: Int64(i) * 1000, score: Double(i % 10) / 10)
            examples.append(LabeledExample(prediction: served, label: i % 2 == 0, labelSource: .outcome, labelDelaySeconds: 1))
        }
        monitor.observe(labeled: examples)
        let changes = monitor.snapshot(counters: JoinCounters(), reviewQueue: 0).alertChanges
        let drop = try #require(changes.first { $0.alertKind == .performanceDrop })
        #expect(drop.alertState == .open && drop.threshold == 0.9 - 0.05 && drop.modelVersion == 1)
    }
}

/// A seeded generator so the synthetic stream is the same on every run.
struct SplitMixGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

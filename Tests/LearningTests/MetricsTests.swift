import Foundation
import Learning
import Testing

@Suite struct MetricsTests {
    /// Scores rounded to two decimals, so many ties, and labels that follow them loosely.
    static func scoredLabels(n: Int, seed: UInt64) -> (scores: [Double], labels: [Bool]) {
        var random = SeededGenerator(seed: seed)
        var scores: [Double] = []
        var labels: [Bool] = []
        for _ in 0..<n {
            let score = (random.uniform() * 100).rounded() / 100
            scores.append(score)
            labels.append(random.uniform() < 0.2 + 0.6 * score)
        }
        return (scores, labels)
    }

    static func bruteForceAUC(scores: [Double], labels: [Bool]) -> Double {
        var pairs = 0.0
        var total = 0.0
        for i in scores.indices where labels[i] {
            for j in scores.indices where !labels[j] {
                total += 1
                if scores[i] > scores[j] { pairs += 1 } else if scores[i] == scores[j] { pairs += 0.5 }
            }
        }
        return pairs / total
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func aucEqualsBruteForcePairCount(seed: UInt64) throws {
        let (scores, labels) = Self.scoredLabels(n: 1_500, seed: seed)
        let auc = try #require(Metrics.rocAUC(scores: scores, labels: labels))
        #expect(abs(auc - Self.bruteForceAUC(scores: scores, labels: labels)) < 1e-12)
        #expect(Metrics.rocAUC(scores: [0.1, 0.2], labels: [true, true]) == nil)
    }

    @Test func pointMetricsOnAHandComputedCase() {
        let scores = [0.9, 0.2, 0.6, 0.4]
        let labels = [true, false, false, true]
        let expectedLogLoss = -(log(0.9) + log(0.8) + log(0.4) + log(0.4)) / 4
        #expect(abs(Metrics.logLoss(scores: scores, labels: labels) - expectedLogLoss) < 1e-15)
        #expect(abs(Metrics.brier(scores: scores, labels: labels) - (0.01 + 0.04 + 0.36 + 0.36) / 4) < 1e-15)
        #expect(Metrics.accuracy(scores: scores, labels: labels, threshold: 0.5) == 0.5)
        // Clipping keeps a confident mistake finite.
        #expect(Metrics.logLoss(scores: [0], labels: [true]) == -log(1e-15))
        let confusion = Metrics.confusion(scores: scores, labels: labels, threshold: 0.5)
        #expect(confusion == ConfusionCounts(truePositives: 1, falsePositives: 1, falseNegatives: 1, trueNegatives: 1))
        let costs = DecisionCosts(truePositive: -2, falsePositive: 1, falseNegative: 5, trueNegative: 0)
        #expect(confusion.cost(costs) == 4)
        // Bins of width 0.5: [0.2, 0.4] with 1 positive, [0.9, 0.6] with 1 positive.
        let calibration = Metrics.calibration(scores: scores, labels: labels, bins: 2)
        #expect(calibration.bins.map(\.count) == [2, 2])
        #expect(abs(calibration.expectedCalibrationError - (0.5 * abs(0.3 - 0.5) + 0.5 * abs(0.75 - 0.5))) < 1e-15)
    }

    @Test func countWindowEqualsBatchOnTheSameEvents() throws {
        let (scores, labels) = Self.scoredLabels(n: 5_000, seed: 9)
        let costs = DecisionCosts(truePositive: 0, falsePositive: 1, falseNegative: 3, trueNegative: 0)
        var window = try QualityWindow(.init(span: .count(2_000), threshold: 0.45, costs: costs))
        for i in scores.indices { window.add(score: scores[i], label: labels[i]) }
        #expect(window.count == 2_000)
        let live = window.report()
        let batch = Metrics.report(
            scores: Array(scores.suffix(2_000)), labels: Array(labels.suffix(2_000)), threshold: 0.45, costs: costs)
        expectEqual(live, batch)
    }

    @Test func timeWindowEqualsBatchOnTheEventsInsideIt() throws {
        var random = SeededGenerator(seed: 4)
        var window = try QualityWindow(.init(span: .eventTime(seconds: 3_600)))
        var events: [(time: Double, score: Double, label: Bool)] = []
        var time = 0.0
        for _ in 0..<6_000 {
            time += random.uniform() * 10
            let score = random.uniform()
            let label = random.uniform() < score
            events.append((time, score, label))
            let accepted = window.add(score: score, label: label, eventTime: time)
            #expect(accepted)
        }
        // Late events (at or before the window start) are refused.
        let late = window.add(score: 0.5, label: true, eventTime: time - 3_600)
        #expect(!late)
        let inside = events.filter { $0.time > time - 3_600 }
        #expect(window.count == inside.count)
        // Continuous scores in 1,000 bins: few pairs share a bin.
        #expect(window.report().aucErrorBound < 0.002)
        expectEqual(window.report(), Metrics.report(scores: inside.map(\.score), labels: inside.map(\.label)))

        window.advance(to: time + 1_800)
        let later = events.filter { $0.time > time + 1_800 - 3_600 }
        #expect(window.count == later.count)
        expectEqual(window.report(), Metrics.report(scores: later.map(\.score), labels: later.map(\.label)))
    }

    @Test func binnedAUCStaysWithinItsErrorBound() throws {
        var random = SeededGenerator(seed: 21)
        var window = try QualityWindow(.init(span: .count(3_000), scoreBins: 50))
        var scores: [Double] = []
        var labels: [Bool] = []
        for _ in 0..<3_000 {
            let score = random.uniform()
            let label = random.uniform() < score
            scores.append(score)
            labels.append(label)
            window.add(score: score, label: label)
        }
        let report = window.report()
        let exact = try #require(Metrics.rocAUC(scores: scores, labels: labels))
        let binned = try #require(report.auc)
        #expect(report.aucErrorBound > 0 && report.aucErrorBound < 0.01)
        #expect(abs(binned - exact) <= report.aucErrorBound)
    }

    func expectEqual(_ live: QualityReport, _ batch: QualityReport, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(live.count == batch.count, sourceLocation: sourceLocation)
        #expect(live.positives == batch.positives, sourceLocation: sourceLocation)
        #expect(live.confusion == batch.confusion, sourceLocation: sourceLocation)
        #expect(live.accuracy == batch.accuracy, sourceLocation: sourceLocation)
        #expect(live.totalCost == batch.totalCost, sourceLocation: sourceLocation)
        #expect(abs(live.logLoss - batch.logLoss) < 1e-9, sourceLocation: sourceLocation)
        #expect(abs(live.brier - batch.brier) < 1e-9, sourceLocation: sourceLocation)
        #expect(abs(live.meanScore - batch.meanScore) < 1e-9, sourceLocation: sourceLocation)
        #expect(abs(live.expectedCalibrationError - batch.expectedCalibrationError) < 1e-9, sourceLocation: sourceLocation)
        #expect(live.calibration.bins.map(\.count) == batch.calibration.bins.map(\.count), sourceLocation: sourceLocation)
        #expect(live.positiveRate == batch.positiveRate, sourceLocation: sourceLocation)
        #expect(live.decidedPositiveRate == batch.decidedPositiveRate, sourceLocation: sourceLocation)
        guard let liveAUC = live.auc, let batchAUC = batch.auc else {
            Issue.record("AUC missing", sourceLocation: sourceLocation)
            return
        }
        #expect(abs(liveAUC - batchAUC) <= live.aucErrorBound + 1e-12, sourceLocation: sourceLocation)
    }
}

@Suite struct DriftTests {
    @Test func psiMatchesAHandComputedCase() {
        // Expected shares 0.25 each; observed 10, 20, 30, 40 of 100.
        let psi = Drift.psi(expected: [0.25, 0.25, 0.25, 0.25], observed: [10, 20, 30, 40])
        let byHand = (0.1 - 0.25) * log(0.1 / 0.25) + (0.2 - 0.25) * log(0.2 / 0.25)
            + (0.3 - 0.25) * log(0.3 / 0.25) + (0.4 - 0.25) * log(0.4 / 0.25)
        #expect(abs(psi - byHand) < 1e-15)
        #expect(abs(psi - 0.2282174095733918) < 1e-12)
        #expect(Drift.psi(expected: [0.5, 0.5], observed: [50, 50]) == 0)
        // An empty bin is floored at epsilon: large, finite.
        let empty = Drift.psi(expected: [0.5, 0.5], observed: [100, 0])
        #expect(empty.isFinite && empty > 4)
    }

    @Test func ksIsTheLargestCumulativeGap() {
        // Cumulative expected 0.25, 0.5, 0.75, 1; observed 0.1, 0.3, 0.6, 1 → gaps 0.15, 0.2, 0.15.
        #expect(abs(Drift.ks(expected: [0.25, 0.25, 0.25, 0.25], observed: [10, 20, 30, 40]) - 0.2) < 1e-15)
        #expect(Drift.ks(expected: [0.5, 0.5], observed: [5, 5]) == 0)
        #expect(Drift.ksPValue(statistic: 0.2, n: 1_000, m: 1_000) < 1e-10)
        #expect(Drift.ksPValue(statistic: 0.01, n: 100, m: 100) == 1)
    }

    @Test func chiSquaredMatchesKnownValues() {
        // E = 25, 50, 25; statistic (5² + 0 + 5²)/25 = 2 with 2 df, whose survival is e^(−1).
        let test = Drift.chiSquared(expected: [0.25, 0.5, 0.25], observed: [30, 50, 20])
        #expect(test.statistic == 2)
        #expect(test.degreesOfFreedom == 2)
        #expect(abs(test.pValue - exp(-1)) < 1e-12)
        // scipy.stats.chi2.sf values.
        #expect(abs(Drift.chiSquaredSurvival(10, degreesOfFreedom: 4) - 0.04042768199451279) < 1e-12)
        #expect(abs(Drift.chiSquaredSurvival(50, degreesOfFreedom: 30) - 0.01240206071890054) < 1e-12)
        #expect(abs(Drift.chiSquaredSurvival(3.841458820694124, degreesOfFreedom: 1) - 0.05) < 1e-12)
        #expect(abs(Drift.chiSquaredSurvival(0.5, degreesOfFreedom: 7) - 0.9994464813904249) < 1e-12)
        #expect(abs(Drift.chiSquaredSurvival(200, degreesOfFreedom: 150) - 0.003973185970821635) < 1e-12)
    }

    /// Counts of `values` over the training bins of `baseline`.
    static func counts(_ values: some Sequence<Double>, over baseline: BinnedDistribution) -> [Int] {
        var counts = [Int](repeating: 0, count: baseline.binCount)
        for value in values { counts[baseline.bin(of: value)] += 1 }
        return counts
    }

    @Test func driftAgainstATrainingBaseline() throws {
        let artifact = try LogisticRegression.fit(TestData.synthetic(n: 10_000, numeric: 1, categorical: true))
        let x0 = try #require(artifact.training.features[0].numeric)
        var random = SeededGenerator(seed: 99)
        let values = (0..<5_000).map { _ in random.normal() }
        let same = Self.counts(values, over: x0.bins)
        let shifted = Self.counts(values.map { $0 + 1 }, over: x0.bins)
        #expect(Drift.psi(expected: x0.bins.proportions, observed: same) < 0.02)
        #expect(Drift.ks(expected: x0.bins.proportions, observed: same) < 0.03)
        #expect(Drift.psi(expected: x0.bins.proportions, observed: shifted) > 0.25)
        #expect(Drift.ks(expected: x0.bins.proportions, observed: shifted) > 0.2)

        // A categorical feature: every live value "b", plus one level training never saw ("other").
        let segment = try #require(artifact.training.features[1].categorical)
        var levels = [Int](repeating: 0, count: segment.levels.count + 1)
        levels[try #require(segment.levels.firstIndex(of: "b"))] = 1_000
        levels[segment.levels.count] = 1
        #expect(Drift.chiSquared(expected: segment.proportions, observed: levels).pValue < 1e-10)
        #expect(Drift.psi(expected: segment.proportions, observed: levels) > 1)
    }

    @Test func scorePSIComparesLiveScoresWithTraining() throws {
        let data = TestData.synthetic(n: 8_000, numeric: 3)
        let artifact = try LogisticRegression.fit(data.slice(0..<4_000))
        let scorer = try LinearScorer(artifact: artifact)
        let live = Self.counts(try scorer.scores(for: data.slice(4_000..<8_000)), over: artifact.training.scores.bins)
        #expect(Drift.psi(expected: artifact.training.scores.bins.proportions, observed: live) < 0.05)
    }
}

@Suite struct PerformanceEstimationTests {
    @Test func cbpeEstimatesAccuracyAndAUCOfACalibratedStream() throws {
        var random = SeededGenerator(seed: 2_024)
        var scores: [Double] = []
        var labels: [Bool] = []
        for _ in 0..<50_000 {
            let score = 1 / (1 + exp(-(random.normal() * 1.5 - 0.4)))
            scores.append(score)
            labels.append(random.uniform() < score)
        }
        let estimate = PerformanceEstimation.estimate(scores: scores, threshold: 0.5)
        let realizedAUC = try #require(Metrics.rocAUC(scores: scores, labels: labels))
        let realizedAccuracy = Metrics.accuracy(scores: scores, labels: labels, threshold: 0.5)
        let expectedAUC = try #require(estimate.expectedAUC)
        #expect(abs(expectedAUC - realizedAUC) < 0.01)
        #expect(abs(estimate.expectedAccuracy - realizedAccuracy) < 0.01)
        #expect(abs(estimate.expectedPositiveRate - Double(labels.filter { $0 }.count) / 50_000) < 0.01)
        #expect(PerformanceEstimation.estimate(scores: [1, 1]).expectedAUC == nil)
    }
}

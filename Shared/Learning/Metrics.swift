import Contracts
import Foundation

/// Business cost of each cell of the confusion matrix ("positive" = decided positive).
///
/// The same numbers as `loop.yaml`'s `costs:` (``Contracts/CostMatrix``), as a value this module can
/// also build on its own.
public struct DecisionCosts: Sendable, Equatable {
    public var truePositive: Double
    public var falsePositive: Double
    public var falseNegative: Double
    public var trueNegative: Double

    /// Costs per decision outcome; the default counts each mistake as 1.
    public init(truePositive: Double = 0, falsePositive: Double = 1, falseNegative: Double = 1, trueNegative: Double = 0) {
        self.truePositive = truePositive
        self.falsePositive = falsePositive
        self.falseNegative = falseNegative
        self.trueNegative = trueNegative
    }

    /// The costs of `loop.yaml`'s `costs:` section.
    public init(_ matrix: CostMatrix) {
        self.init(
            truePositive: matrix.truePositive, falsePositive: matrix.falsePositive,
            falseNegative: matrix.falseNegative, trueNegative: matrix.trueNegative)
    }
}

/// Counts of decisions against labels.
public struct ConfusionCounts: Sendable, Equatable {
    public var truePositives = 0
    public var falsePositives = 0
    public var falseNegatives = 0
    public var trueNegatives = 0

    /// Counts of each outcome.
    public init(truePositives: Int = 0, falsePositives: Int = 0, falseNegatives: Int = 0, trueNegatives: Int = 0) {
        self.truePositives = truePositives
        self.falsePositives = falsePositives
        self.falseNegatives = falseNegatives
        self.trueNegatives = trueNegatives
    }

    /// The number of decisions.
    public var total: Int { truePositives + falsePositives + falseNegatives + trueNegatives }
    /// The share of correct decisions (0 when empty).
    public var accuracy: Double { total == 0 ? 0 : Double(truePositives + trueNegatives) / Double(total) }

    /// The summed cost of every decision.
    public func cost(_ costs: DecisionCosts) -> Double {
        Double(truePositives) * costs.truePositive + Double(falsePositives) * costs.falsePositive
            + Double(falseNegatives) * costs.falseNegative + Double(trueNegatives) * costs.trueNegative
    }

    @inline(__always)
    mutating func record(decidedPositive: Bool, label: Bool, by delta: Int) {
        switch (decidedPositive, label) {
        case (true, true): truePositives += delta
        case (true, false): falsePositives += delta
        case (false, true): falseNegatives += delta
        case (false, false): trueNegatives += delta
        }
    }
}

/// One equal-width score bin of a reliability diagram.
public struct ReliabilityBin: Sendable, Equatable {
    public var lower: Double
    public var upper: Double
    public var count: Int
    /// The mean predicted probability in the bin (0 when empty).
    public var meanScore: Double
    /// The observed share of positives in the bin (0 when empty).
    public var positiveRate: Double
}

/// Calibration of probabilities against labels.
public struct Calibration: Sendable, Equatable {
    /// `Σ_b (n_b / n) · |meanScore_b − positiveRate_b|` over equal-width bins of `[0, 1]`.
    public var expectedCalibrationError: Double
    public var bins: [ReliabilityBin]

    /// Builds the reliability diagram from per-bin counts, score sums and positive counts.
    static func from(counts: [Int], scoreSums: [Double], positives: [Int]) -> Calibration {
        let total = counts.reduce(0, +)
        let binCount = counts.count
        var error = 0.0
        var bins: [ReliabilityBin] = []
        for b in 0..<binCount {
            let n = counts[b]
            let meanScore = n == 0 ? 0 : scoreSums[b] / Double(n)
            let positiveRate = n == 0 ? 0 : Double(positives[b]) / Double(n)
            if total > 0 { error += Double(n) / Double(total) * abs(meanScore - positiveRate) }
            bins.append(ReliabilityBin(
                lower: Double(b) / Double(binCount), upper: Double(b + 1) / Double(binCount),
                count: n, meanScore: meanScore, positiveRate: positiveRate))
        }
        return Calibration(expectedCalibrationError: error, bins: bins)
    }
}

/// Quality of probabilities against labels: the same shape from a batch (``Metrics/report(scores:labels:threshold:costs:calibrationBins:)``)
/// and from a sliding window (``QualityWindow/report()``). Every metric is 0 for an empty set.
public struct QualityReport: Sendable, Equatable {
    public var count: Int
    public var positives: Int
    /// ROC AUC; `nil` unless both classes are present.
    public var auc: Double?
    /// An upper bound of `|auc − exact AUC|`: 0 for a batch; for a binned window,
    /// `½ · Σ_b pos_b · neg_b / (P · N)` (only pairs in the same score bin can be misordered, each by ½).
    public var aucErrorBound: Double
    /// Mean log loss with probabilities clipped to `[1e-15, 1 − 1e-15]`.
    public var logLoss: Double
    /// Mean squared error of the probability.
    public var brier: Double
    /// Decisions at the threshold (score ≥ threshold is positive).
    public var confusion: ConfusionCounts
    public var accuracy: Double
    public var calibration: Calibration
    /// Summed business cost of the decisions, and its mean per decision.
    public var totalCost: Double
    public var meanCost: Double
    /// Share of positive labels.
    public var positiveRate: Double
    /// Share of positive decisions.
    public var decidedPositiveRate: Double
    public var meanScore: Double

    /// ``Calibration/expectedCalibrationError`` of ``calibration``.
    public var expectedCalibrationError: Double { calibration.expectedCalibrationError }
}

/// Batch metrics over parallel arrays of probabilities and labels.
public enum Metrics {
    /// Probabilities are clipped to `[logLossEpsilon, 1 − logLossEpsilon]` for log loss.
    public static let logLossEpsilon = 1e-15

    /// ROC AUC, ties counted as half (the Mann–Whitney statistic, equal to scikit-learn's
    /// `roc_auc_score`, which interpolates linearly across tied scores). `nil` without both classes.
    public static func rocAUC(scores: [Double], labels: [Bool]) -> Double? {
        let n = min(scores.count, labels.count)
        let order = (0..<n).sorted { scores[$0] < scores[$1] }
        var negativesBelow = 0.0
        var pairs = 0.0
        var positives = 0.0
        var negatives = 0.0
        var start = 0
        while start < n {
            var end = start
            var groupPositives = 0.0
            var groupNegatives = 0.0
            while end < n && scores[order[end]] == scores[order[start]] {
                if labels[order[end]] { groupPositives += 1 } else { groupNegatives += 1 }
                end += 1
            }
            pairs += groupPositives * negativesBelow + 0.5 * groupPositives * groupNegatives
            negativesBelow += groupNegatives
            positives += groupPositives
            negatives += groupNegatives
            start = end
        }
        guard positives > 0, negatives > 0 else { return nil }
        return pairs / (positives * negatives)
    }

    /// Mean log loss with clipped probabilities.
    public static func logLoss(scores: [Double], labels: [Bool]) -> Double {
        mean(scores, labels) { score, label in logLossTerm(score: score, label: label) }
    }

    /// Mean squared difference between probability and label.
    public static func brier(scores: [Double], labels: [Bool]) -> Double {
        mean(scores, labels) { score, label in (score - (label ? 1 : 0)) * (score - (label ? 1 : 0)) }
    }

    /// Decisions (score ≥ threshold is positive) against labels.
    public static func confusion(scores: [Double], labels: [Bool], threshold: Double) -> ConfusionCounts {
        var counts = ConfusionCounts()
        for i in 0..<min(scores.count, labels.count) {
            counts.record(decidedPositive: scores[i] >= threshold, label: labels[i], by: 1)
        }
        return counts
    }

    /// The share of correct decisions at `threshold`.
    public static func accuracy(scores: [Double], labels: [Bool], threshold: Double) -> Double {
        confusion(scores: scores, labels: labels, threshold: threshold).accuracy
    }

    /// Reliability diagram and expected calibration error over `bins` equal-width bins of `[0, 1]`.
    public static func calibration(scores: [Double], labels: [Bool], bins: Int = 10) -> Calibration {
        let binCount = max(1, bins)
        var counts = [Int](repeating: 0, count: binCount)
        var sums = [Double](repeating: 0, count: binCount)
        var positives = [Int](repeating: 0, count: binCount)
        for i in 0..<min(scores.count, labels.count) {
            let b = bin(of: scores[i], bins: binCount)
            counts[b] += 1
            sums[b] += scores[i]
            if labels[i] { positives[b] += 1 }
        }
        return Calibration.from(counts: counts, scoreSums: sums, positives: positives)
    }

    /// Every metric of a ``QualityReport`` on one batch.
    public static func report(
        scores: [Double], labels: [Bool], threshold: Double = 0.5, costs: DecisionCosts = DecisionCosts(),
        calibrationBins: Int = 10
    ) -> QualityReport {
        let n = min(scores.count, labels.count)
        let scores = Array(scores.prefix(n))
        let labels = Array(labels.prefix(n))
        let confusion = confusion(scores: scores, labels: labels, threshold: threshold)
        let positives = labels.reduce(0) { $0 + ($1 ? 1 : 0) }
        let totalCost = confusion.cost(costs)
        return QualityReport(
            count: n, positives: positives, auc: rocAUC(scores: scores, labels: labels), aucErrorBound: 0,
            logLoss: logLoss(scores: scores, labels: labels), brier: brier(scores: scores, labels: labels),
            confusion: confusion, accuracy: confusion.accuracy,
            calibration: calibration(scores: scores, labels: labels, bins: calibrationBins),
            totalCost: totalCost, meanCost: n == 0 ? 0 : totalCost / Double(n),
            positiveRate: n == 0 ? 0 : Double(positives) / Double(n),
            decidedPositiveRate: n == 0 ? 0 : Double(confusion.truePositives + confusion.falsePositives) / Double(n),
            meanScore: n == 0 ? 0 : scores.reduce(0, +) / Double(n))
    }

    private static func mean(_ scores: [Double], _ labels: [Bool], _ term: (Double, Bool) -> Double) -> Double {
        let n = min(scores.count, labels.count)
        guard n > 0 else { return 0 }
        var total = 0.0
        for i in 0..<n { total += term(scores[i], labels[i]) }
        return total / Double(n)
    }

    @inline(__always)
    static func logLossTerm(score: Double, label: Bool) -> Double {
        let clipped = min(max(score, logLossEpsilon), 1 - logLossEpsilon)
        return label ? -log(clipped) : -log1p(-clipped)
    }

    /// The equal-width bin of `[0, 1]` a probability falls into (values outside are clamped).
    @inline(__always)
    static func bin(of score: Double, bins: Int) -> Int {
        guard score > 0 else { return 0 }
        return min(Int(score * Double(bins)), bins - 1)
    }
}

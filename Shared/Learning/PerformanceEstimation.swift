/// Confidence-based performance estimation (CBPE, as NannyML): the quality a window of predictions
/// is expected to have, from its scores alone, before any label arrives.
///
/// If the scores are calibrated, prediction `i` is positive with probability `pᵢ`. Then the
/// expected accuracy at threshold `t` is `mean(pᵢ ≥ t ? pᵢ : 1 − pᵢ)`, and the expected ROC curve
/// has, at each threshold, `TPR = Σ_{pⱼ ≥ t} pⱼ / Σ pⱼ` and `FPR = Σ_{pⱼ ≥ t} (1 − pⱼ) / Σ (1 − pⱼ)`;
/// its trapezoidal area (tied scores interpolated) is the expected AUC. Estimates are only as good
/// as the calibration: check ECE on labeled data first.
public enum PerformanceEstimation {
    public struct Estimate: Sendable, Equatable {
        public var count: Int
        public var expectedAccuracy: Double
        /// `nil` when the scores are all 0 or all 1 (no expected positives or negatives).
        public var expectedAUC: Double?
        /// The expected share of positive labels (`mean pᵢ`).
        public var expectedPositiveRate: Double
    }

    /// Estimates accuracy at `threshold` and ROC AUC from probabilities (values outside `[0, 1]` are clamped).
    public static func estimate(scores: [Double], threshold: Double = 0.5) -> Estimate {
        let probabilities = scores.map { min(max($0, 0), 1) }.sorted(by: >)
        let n = probabilities.count
        guard n > 0 else { return Estimate(count: 0, expectedAccuracy: 0, expectedAUC: nil, expectedPositiveRate: 0) }
        var correct = 0.0
        var positives = 0.0
        for p in probabilities {
            correct += p >= threshold ? p : 1 - p
            positives += p
        }
        let negatives = Double(n) - positives
        var auc: Double?
        if positives > 0, negatives > 0 {
            var truePositives = 0.0
            var area = 0.0
            var start = 0
            while start < n {
                var end = start
                var groupPositives = 0.0
                var groupNegatives = 0.0
                while end < n && probabilities[end] == probabilities[start] {
                    groupPositives += probabilities[end]
                    groupNegatives += 1 - probabilities[end]
                    end += 1
                }
                // Trapezoid between the previous and this ROC point.
                area += groupNegatives * (truePositives + 0.5 * groupPositives)
                truePositives += groupPositives
                start = end
            }
            auc = area / (positives * negatives)
        }
        return Estimate(
            count: n, expectedAccuracy: correct / Double(n), expectedAUC: auc,
            expectedPositiveRate: positives / Double(n))
    }
}

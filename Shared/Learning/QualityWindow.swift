/// Live quality of labeled predictions over a sliding window (by count or by event time), O(1)
/// amortized per event and O(bins) per report.
///
/// Every metric but AUC is exact (equal to ``Metrics/report(scores:labels:threshold:costs:calibrationBins:)``
/// on the window's events, up to floating-point rounding of running sums). AUC comes from
/// `scoreBins` equal-width score bins per class: pairs in different bins are ordered exactly, pairs
/// in the same bin count ½, so the error is at most ``QualityReport/aucErrorBound``
/// `= ½ · Σ_b pos_b · neg_b / (P · N)` — and never more than ½ · (largest share of pairs in one bin).
public struct QualityWindow: Sendable {
    public struct Configuration: Sendable, Equatable {
        public var span: WindowSpan
        /// Scores at or above it are decided positive.
        public var threshold: Double
        public var costs: DecisionCosts
        /// Equal-width bins of `[0, 1]` for AUC (resolution `1 / scoreBins`).
        public var scoreBins: Int
        /// Equal-width bins of `[0, 1]` for the reliability diagram and ECE.
        public var calibrationBins: Int

        /// A configuration; the defaults decide at 0.5 and count each mistake as 1.
        public init(
            span: WindowSpan, threshold: Double = 0.5, costs: DecisionCosts = DecisionCosts(),
            scoreBins: Int = 1000, calibrationBins: Int = 10
        ) {
            self.span = span
            self.threshold = threshold
            self.costs = costs
            self.scoreBins = scoreBins
            self.calibrationBins = calibrationBins
        }

        func validate() throws(LearningError) {
            try span.validate()
            guard (0...1).contains(threshold) else {
                throw LearningError(.invalidConfiguration, "the decision threshold must be within 0…1, not \(threshold)")
            }
            guard scoreBins >= 2, calibrationBins >= 1 else {
                throw LearningError(.invalidConfiguration, "a quality window needs at least 2 score bins and 1 calibration bin")
            }
        }
    }

    private struct Event: Sendable {
        var score: Double
        var label: Bool
    }

    public let configuration: Configuration
    private var window: SlidingWindow<Event>
    private var positiveBins: [Int]
    private var negativeBins: [Int]
    private var calibrationCounts: [Int]
    private var calibrationSums: [Double]
    private var calibrationPositives: [Int]
    private var confusion = ConfusionCounts()
    private var logLossSum = 0.0
    private var brierSum = 0.0
    private var scoreSum = 0.0

    /// An empty window; throws if the configuration is out of range.
    public init(_ configuration: Configuration) throws(LearningError) {
        try configuration.validate()
        self.configuration = configuration
        window = try SlidingWindow(span: configuration.span)
        positiveBins = [Int](repeating: 0, count: configuration.scoreBins)
        negativeBins = [Int](repeating: 0, count: configuration.scoreBins)
        calibrationCounts = [Int](repeating: 0, count: configuration.calibrationBins)
        calibrationSums = [Double](repeating: 0, count: configuration.calibrationBins)
        calibrationPositives = [Int](repeating: 0, count: configuration.calibrationBins)
    }

    /// The number of events in the window.
    public var count: Int { window.count }

    /// Adds a labeled prediction; returns `false` (and ignores it) for a score outside `[0, 1]` or
    /// an event too late for a time window.
    @discardableResult
    public mutating func add(score: Double, label: Bool, eventTime: Double = 0) -> Bool {
        guard score >= 0, score <= 1 else { return false }
        guard window.append(Event(score: score, label: label), at: eventTime) else { return false }
        apply(Event(score: score, label: label), sign: 1)
        while let expired = window.popExpired() { apply(expired, sign: -1) }
        return true
    }

    /// Moves a time window's end to `eventTime`, dropping what falls out (e.g. on a quiet stream).
    public mutating func advance(to eventTime: Double) {
        window.advance(to: eventTime)
        while let expired = window.popExpired() { apply(expired, sign: -1) }
    }

    private mutating func apply(_ event: Event, sign: Int) {
        let delta = Double(sign)
        let scoreBin = Metrics.bin(of: event.score, bins: configuration.scoreBins)
        if event.label { positiveBins[scoreBin] += sign } else { negativeBins[scoreBin] += sign }
        let calibrationBin = Metrics.bin(of: event.score, bins: configuration.calibrationBins)
        calibrationCounts[calibrationBin] += sign
        calibrationSums[calibrationBin] += delta * event.score
        if event.label { calibrationPositives[calibrationBin] += sign }
        confusion.record(decidedPositive: event.score >= configuration.threshold, label: event.label, by: sign)
        logLossSum += delta * Metrics.logLossTerm(score: event.score, label: event.label)
        let error = event.score - (event.label ? 1 : 0)
        brierSum += delta * error * error
        scoreSum += delta * event.score
    }

    /// The window's quality now.
    public func report() -> QualityReport {
        let n = window.count
        var negativesBelow = 0.0
        var pairs = 0.0
        var tiedPairs = 0.0
        for b in 0..<configuration.scoreBins {
            let positives = Double(positiveBins[b])
            let negatives = Double(negativeBins[b])
            pairs += positives * negativesBelow + 0.5 * positives * negatives
            tiedPairs += positives * negatives
            negativesBelow += negatives
        }
        let positives = confusion.truePositives + confusion.falseNegatives
        let allPairs = Double(positives) * Double(n - positives)
        let totalCost = confusion.cost(configuration.costs)
        let count = Double(max(n, 1))
        return QualityReport(
            count: n, positives: positives, auc: allPairs > 0 ? pairs / allPairs : nil,
            aucErrorBound: allPairs > 0 ? 0.5 * tiedPairs / allPairs : 0,
            logLoss: n == 0 ? 0 : max(0, logLossSum) / count, brier: n == 0 ? 0 : max(0, brierSum) / count,
            confusion: confusion, accuracy: confusion.accuracy,
            calibration: .from(counts: calibrationCounts, scoreSums: calibrationSums, positives: calibrationPositives),
            totalCost: totalCost, meanCost: n == 0 ? 0 : totalCost / count,
            positiveRate: Double(positives) / count,
            decidedPositiveRate: Double(confusion.truePositives + confusion.falsePositives) / count,
            meanScore: n == 0 ? 0 : scoreSum / count)
    }
}

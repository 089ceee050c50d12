import Contracts
@testable import Feedback
import Learning
import Testing

@Suite("drift tracker")
struct DriftTrackerTests {
    /// Inputs of every kind, numeric ones with different edge counts, one without a training summary.
    static let header = ModelArtifactHeader(
        kind: .logisticRegression, schemaVersion: 1,
        schema: FeatureSchema(features: [
            FeatureSpec(name: "a", kind: .numeric), FeatureSpec(name: "c", kind: .categorical, levels: ["x", "y", "z"]),
            FeatureSpec(name: "u", kind: .numeric), FeatureSpec(name: "b", kind: .numeric),
        ]),
        training: TrainingSummary(
            exampleCount: 100, positiveCount: 50,
            features: [
                FeatureSummary(name: "a", count: 100, numeric: NumericSummary(
                    mean: 0, std: 1, min: -2, max: 2, bins: BinnedDistribution(edges: [-1, 0, 1], proportions: [0.2, 0.3, 0.3, 0.2]))),
                FeatureSummary(name: "c", count: 100, categorical: CategoricalSummary(
                    levels: ["x", "y", "z"], proportions: [0.4, 0.3, 0.2, 0.1], distinctValues: 5)),
                FeatureSummary(name: "b", count: 100, numeric: NumericSummary(
                    mean: 5, std: 3, min: 0, max: 10, bins: BinnedDistribution(edges: [2.5], proportions: [0.5, 0.5]))),
            ],
            scores: ScoreSummary(count: 100, mean: 0.5, bins: BinnedDistribution(
                edges: [0.25, 0.5, 0.75], proportions: [0.25, 0.25, 0.25, 0.25]))))

    /// The bin of `value` for an input, computed independently of the tracker.
    static func bin(_ value: Double, of input: String) -> Int {
        switch input {
        case "a": return BinnedDistribution(edges: [-1, 0, 1], proportions: []).bin(of: value)
        case "b": return BinnedDistribution(edges: [2.5], proportions: []).bin(of: value)
        case "c": return value >= 0 && value < 3 && value == value.rounded() ? Int(value) : 3
        default: return BinnedDistribution(edges: [0.25, 0.5, 0.75], proportions: []).bin(of: value)
        }
    }

    @Test("binned counts over the sliding window equal a recount of its last predictions, whatever the served order, kinds and missing values")
    func slidingCounts() {
        let window = 7
        var tracker = DriftTracker(header: Self.header, windowCount: window)
        // Served in another order than the schema's, with an extra feature the model does not know.
        let served = ["b", "extra", "c", "a", "u"]
        var random = SplitMix(seed: 42)
        func uniform() -> Double { Double(random.next() % 10_000) / 10_000 }
        var history: [(values: [Double?], score: Double)] = []
        for i in 0..<40 {
            let values: [Double?] = [
                uniform() * 10, uniform(), i % 5 == 0 ? Double.nan : Double(random.next() % 5) - (i % 7 == 0 ? 0.5 : 0),
                i % 4 == 0 ? nil : uniform() * 4 - 2, uniform(),
            ]
            let score = i % 9 == 0 ? Double.nan : uniform()
            tracker.add(names: served, values: values, score: score)
            history.append((values, score))

            let recent = history.suffix(window)
            let drift = tracker.featureDrift()
            #expect(drift.map(\.feature) == ["a", "c", "b"], "the untracked input is not reported")
            for (name, position) in [("a", 3), ("c", 2), ("b", 0)] {
                let summary = Self.header.training.features.first { $0.name == name }!
                let shares = summary.numeric?.bins.proportions ?? summary.categorical!.proportions
                var counts = [Int](repeating: 0, count: shares.count)
                for entry in recent { if let value = entry.values[position] { counts[Self.bin(value, of: name)] += 1 } }
                let figure = drift.first { $0.feature == name }!
                #expect(figure.count == counts.reduce(0, +))
                #expect(figure.psi == Drift.psi(expected: shares, observed: counts))
                if name == "c" {
                    #expect(figure.chiSquaredPValue == Drift.chiSquared(expected: shares, observed: counts).pValue)
                } else {
                    #expect(figure.ks == Drift.ks(expected: shares, observed: counts))
                }
            }
            var scoreCounts = [0, 0, 0, 0]
            for entry in recent { scoreCounts[Self.bin(entry.score, of: "score")] += 1 }
            let scoreFigure = tracker.scoreDrift()
            #expect(scoreFigure.count == recent.count)
            #expect(scoreFigure.psi == Drift.psi(expected: [0.25, 0.25, 0.25, 0.25], observed: scoreCounts))
        }
    }
}

import Foundation

/// A logistic regression compiled for the hot path: built once from an artifact, then scores
/// feature vectors without allocating.
///
/// A feature vector holds one `Double` per schema feature, in schema order: the value of a numeric
/// feature, the category code of a categorical one (``FeatureSchema/categoryCode(of:forFeatureAt:)``).
/// The contribution of feature `j` is exactly the artifact's coefficient times the standardized value
/// (or the coefficient of the selected one-hot column), and `logit = intercept + Σ contributions`.
public struct LinearScorer: Sendable {
    /// The score of one feature vector.
    public struct Score: Sendable, Equatable {
        public var logit: Double
        /// `σ(logit)`, the probability of the positive class.
        public var probability: Double
    }

    /// One entry of an explanation.
    public struct Contribution: Sendable, Equatable {
        public var feature: String
        public var index: Int
        /// The feature's additive share of the logit.
        public var value: Double
    }

    /// Why an input is outside what training saw.
    public struct RangeViolation: Sendable, Equatable {
        public enum Reason: String, Sendable { case notFinite = "not_finite", zScore = "z_score", belowMinimum = "below_minimum", aboveMaximum = "above_maximum" }
        public var featureIndex: Int
        public var value: Double
        /// `(value − training mean) / training std` (infinite when the training std is 0 and the value differs).
        public var zScore: Double
        public var reason: Reason
    }

    /// The inputs, in the order feature vectors hold them.
    public let schema: FeatureSchema
    /// The logit of a vector whose every contribution is 0.
    public let intercept: Double
    private let isNumeric: [Bool]
    private let means: [Double]
    private let scales: [Double]
    private let numericWeights: [Double]
    private let levelOffsets: [Int]
    private let levelCounts: [Int]
    private let levelWeights: [Double]
    private let rawMeans: [Double]
    private let rawStds: [Double]
    private let minimums: [Double]
    private let maximums: [Double]

    /// The number of values a feature vector must have.
    public var featureCount: Int { isNumeric.count }

    /// Compiles the artifact's model; throws if the artifact is internally inconsistent.
    public init(artifact: ModelArtifact) throws(LearningError) {
        guard case .logisticRegression(let model) = artifact.body else {
            throw LearningError(.unknownModelKind, "a linear scorer cannot run a \(artifact.kind) model")
        }
        let specs = artifact.schema.features
        let count = specs.count
        guard model.coefficients.count == count, model.means.count == count, model.scales.count == count,
              artifact.training.features.count == count
        else {
            throw LearningError(.malformedArtifact, "the model's arrays do not match its \(count) schema features")
        }
        var isNumeric: [Bool] = []
        var numericWeights: [Double] = []
        var levelOffsets: [Int] = []
        var levelCounts: [Int] = []
        var levelWeights: [Double] = []
        var rawMeans: [Double] = []
        var rawStds: [Double] = []
        var minimums: [Double] = []
        var maximums: [Double] = []
        for (j, spec) in specs.enumerated() {
            let weights = model.coefficients[j]
            guard weights.count == spec.encodedWidth, weights.allSatisfy(\.isFinite),
                  model.scales[j].isFinite, model.scales[j] > 0, model.means[j].isFinite
            else {
                throw LearningError(.malformedArtifact, "feature \(spec.name) has inconsistent coefficients or scaling")
            }
            isNumeric.append(spec.kind == .numeric)
            numericWeights.append(spec.kind == .numeric ? weights[0] : 0)
            levelOffsets.append(levelWeights.count)
            levelCounts.append(spec.kind == .numeric ? 0 : spec.levels.count)
            if spec.kind == .categorical { levelWeights.append(contentsOf: weights) }
            let summary = artifact.training.features[j].numeric
            rawMeans.append(summary?.mean ?? 0)
            rawStds.append(summary?.std ?? 0)
            minimums.append(summary?.min ?? -.infinity)
            maximums.append(summary?.max ?? .infinity)
        }
        guard model.intercept.isFinite else { throw LearningError(.malformedArtifact, "the intercept is not finite") }
        self.schema = artifact.schema
        self.intercept = model.intercept
        self.isNumeric = isNumeric
        self.means = model.means
        self.scales = model.scales
        self.numericWeights = numericWeights
        self.levelOffsets = levelOffsets
        self.levelCounts = levelCounts
        self.levelWeights = levelWeights
        self.rawMeans = rawMeans
        self.rawStds = rawStds
        self.minimums = minimums
        self.maximums = maximums
    }

    // MARK: - Scoring

    /// Scores `features` and writes each feature's contribution to `contributions` (at least
    /// ``featureCount`` long). Allocates nothing.
    @inline(__always)
    public func score(
        _ features: UnsafeBufferPointer<Double>, contributions: UnsafeMutableBufferPointer<Double>
    ) throws(LearningError) -> Score {
        guard features.count == featureCount else { throw lengthError(features.count) }
        guard contributions.count >= featureCount else {
            throw LearningError(.invalidInput, "the contributions buffer holds \(contributions.count) of \(featureCount) values")
        }
        var logit = intercept
        for j in 0..<featureCount {
            let contribution = contribution(of: features[j], at: j)
            contributions[j] = contribution
            logit += contribution
        }
        return Score(logit: logit, probability: sigmoid(logit))
    }

    /// Scores `features` without reporting contributions. Allocates nothing.
    @inline(__always)
    public func score(_ features: UnsafeBufferPointer<Double>) throws(LearningError) -> Score {
        guard features.count == featureCount else { throw lengthError(features.count) }
        var logit = intercept
        for j in 0..<featureCount { logit += contribution(of: features[j], at: j) }
        return Score(logit: logit, probability: sigmoid(logit))
    }

    /// Scores `features`, resizing `contributions` to ``featureCount`` only if it has another size
    /// (reuse the same array to avoid allocating per call).
    public func score(_ features: [Double], contributions: inout [Double]) throws(LearningError) -> Score {
        if contributions.count != featureCount { contributions = [Double](repeating: 0, count: featureCount) }
        return try features.withUnsafeBufferPointer { (input) throws(LearningError) -> Score in
            try contributions.withUnsafeMutableBufferPointer { (output) throws(LearningError) -> Score in
                try score(input, contributions: output)
            }
        }
    }

    /// Scores `features` without reporting contributions.
    public func score(_ features: [Double]) throws(LearningError) -> Score {
        try features.withUnsafeBufferPointer { (input) throws(LearningError) -> Score in try score(input) }
    }

    @inline(__always)
    private func contribution(of value: Double, at j: Int) -> Double {
        if isNumeric[j] { return numericWeights[j] * ((value - means[j]) / scales[j]) }
        return levelWeights[levelOffsets[j] + oneHotColumn(ofCode: value, levelCount: levelCounts[j])]
    }

    private func lengthError(_ count: Int) -> LearningError {
        LearningError(.invalidInput, "the feature vector has \(count) values; the model takes \(featureCount)")
    }

    /// Probabilities for every row of `data`, whose columns are matched to the schema by name.
    public func scores(for data: Dataset) throws(LearningError) -> [Double] {
        var columns: [Dataset.Values] = []
        for spec in schema.features {
            guard let column = data.columns.first(where: { $0.name == spec.name }) else {
                throw LearningError(.invalidInput, "the data has no column \(spec.name)")
            }
            guard column.values.count == data.count else {
                throw LearningError(.invalidInput, "column \(spec.name) has \(column.values.count) values for \(data.count) rows")
            }
            switch (spec.kind, column.values) {
            case (.numeric, .numeric), (.categorical, .categorical): columns.append(column.values)
            default: throw LearningError(.invalidInput, "column \(spec.name) is not \(spec.kind.rawValue)")
            }
        }
        let codes: [[String: Double]] = schema.features.map { spec in
            Dictionary(uniqueKeysWithValues: spec.levels.enumerated().map { ($1, Double($0)) })
        }
        var row = [Double](repeating: 0, count: featureCount)
        var scores: [Double] = []
        scores.reserveCapacity(data.count)
        for i in 0..<data.count {
            for j in 0..<featureCount {
                switch columns[j] {
                case .numeric(let values): row[j] = values[i]
                case .categorical(let values): row[j] = codes[j][values[i]] ?? FeatureSchema.otherCode
                }
            }
            scores.append(try score(row).probability)
        }
        return scores
    }

    // MARK: - Explanations

    /// Writes the indices of the `k` largest contributions by magnitude (ties: lower index first),
    /// largest first, to `indices`; returns how many it wrote (`min(k, contributions.count, indices.count)`).
    /// Allocates nothing.
    public static func topContributions(
        _ contributions: UnsafeBufferPointer<Double>, k: Int, into indices: UnsafeMutableBufferPointer<Int>
    ) -> Int {
        let limit = max(0, min(k, contributions.count, indices.count))
        guard limit > 0 else { return 0 }
        var filled = 0
        for j in 0..<contributions.count {
            let magnitude = abs(contributions[j])
            if filled == limit && !(magnitude > abs(contributions[indices[limit - 1]])) { continue }
            var position = filled == limit ? limit - 1 : filled
            while position > 0 && magnitude > abs(contributions[indices[position - 1]]) {
                indices[position] = indices[position - 1]
                position -= 1
            }
            indices[position] = j
            if filled < limit { filled += 1 }
        }
        return filled
    }

    /// The `k` largest contributions by magnitude, with feature names (allocates; for logging and
    /// explanations, not the inner loop).
    public func explanation(_ contributions: [Double], k: Int) -> [Contribution] {
        var indices = [Int](repeating: 0, count: max(0, min(k, contributions.count)))
        let written = contributions.withUnsafeBufferPointer { values in
            indices.withUnsafeMutableBufferPointer { Self.topContributions(values, k: k, into: $0) }
        }
        return indices.prefix(written).map { j in
            Contribution(feature: schema.features[j].name, index: j, value: contributions[j])
        }
    }

    // MARK: - Range checks

    /// The first numeric feature whose value is not finite, lies more than `maxZScore` training
    /// standard deviations from the training mean, or (when `boundsMargin` is given) lies outside
    /// `[min − margin·(max − min), max + margin·(max − min)]` of training. Categorical features are
    /// never out of range: unseen values score as "other".
    public func firstOutOfRange(
        _ features: UnsafeBufferPointer<Double>, maxZScore: Double, boundsMargin: Double? = nil
    ) -> RangeViolation? {
        for j in 0..<min(features.count, featureCount) where isNumeric[j] {
            let value = features[j]
            let deviation = value - rawMeans[j]
            let z = rawStds[j] > 0 ? deviation / rawStds[j] : (deviation == 0 ? 0 : (deviation > 0 ? .infinity : -.infinity))
            if !value.isFinite { return RangeViolation(featureIndex: j, value: value, zScore: .nan, reason: .notFinite) }
            if abs(z) > maxZScore { return RangeViolation(featureIndex: j, value: value, zScore: z, reason: .zScore) }
            if let margin = boundsMargin {
                let slack = margin * (maximums[j] - minimums[j])
                if value < minimums[j] - slack { return RangeViolation(featureIndex: j, value: value, zScore: z, reason: .belowMinimum) }
                if value > maximums[j] + slack { return RangeViolation(featureIndex: j, value: value, zScore: z, reason: .aboveMaximum) }
            }
        }
        return nil
    }

    /// ``firstOutOfRange(_:maxZScore:boundsMargin:)`` for an array.
    public func firstOutOfRange(_ features: [Double], maxZScore: Double, boundsMargin: Double? = nil) -> RangeViolation? {
        features.withUnsafeBufferPointer { firstOutOfRange($0, maxZScore: maxZScore, boundsMargin: boundsMargin) }
    }
}

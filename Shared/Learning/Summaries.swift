/// A distribution over bins cut at fixed edges: the training side of drift detection.
///
/// With edges `e₀ < e₁ < … < e₍ₖ₋₁₎` there are `k + 1` bins: `(-∞, e₀]`, `(e₀, e₁]`, …, `(e₍ₖ₋₁₎, +∞)`.
public struct BinnedDistribution: Codable, Sendable, Equatable {
    /// Strictly increasing cut points.
    public var edges: [Double]
    /// The share of values in each bin (`edges.count + 1` entries summing to 1).
    public var proportions: [Double]

    /// A distribution from its edges and bin shares.
    public init(edges: [Double], proportions: [Double]) {
        self.edges = edges
        self.proportions = proportions
    }

    /// The number of bins.
    public var binCount: Int { edges.count + 1 }

    /// The bin `value` falls into: the number of edges strictly below it (NaN goes to the last bin).
    @inline(__always)
    public func bin(of value: Double) -> Int {
        guard !value.isNaN else { return edges.count }
        var low = 0
        var high = edges.count
        while low < high {
            let middle = (low + high) / 2
            if edges[middle] < value { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Cuts `values` at their quantiles `1/bins, 2/bins, …` (linear interpolation, as numpy's
    /// default), drops repeated edges and measures each bin's share of `values`.
    public static func quantiles(of values: [Double], bins: Int) -> BinnedDistribution {
        let sorted = values.sorted()
        return quantiles(ofSorted: sorted, bins: bins)
    }

    static func quantiles(ofSorted sorted: [Double], bins: Int) -> BinnedDistribution {
        guard !sorted.isEmpty, bins > 1 else { return BinnedDistribution(edges: [], proportions: [1]) }
        var edges: [Double] = []
        for k in 1..<bins {
            let edge = quantile(ofSorted: sorted, Double(k) / Double(bins))
            if edges.last.map({ edge > $0 }) ?? true { edges.append(edge) }
        }
        var distribution = BinnedDistribution(edges: edges, proportions: [])
        var counts = [Int](repeating: 0, count: edges.count + 1)
        for value in sorted { counts[distribution.bin(of: value)] += 1 }
        distribution.proportions = counts.map { Double($0) / Double(sorted.count) }
        return distribution
    }
}

func quantile(ofSorted sorted: [Double], _ q: Double) -> Double {
    let position = q * Double(sorted.count - 1)
    let lower = Int(position.rounded(.down))
    let upper = min(lower + 1, sorted.count - 1)
    let fraction = position - Double(lower)
    return sorted[lower] + fraction * (sorted[upper] - sorted[lower])
}

/// Training statistics of a numeric feature.
public struct NumericSummary: Codable, Sendable, Equatable {
    public var mean: Double
    /// Population standard deviation (divides by n, as scikit-learn's `StandardScaler`).
    public var std: Double
    public var min: Double
    public var max: Double
    /// Quantile bins of the training values (deciles by default).
    public var bins: BinnedDistribution

    /// A summary from its statistics.
    public init(mean: Double, std: Double, min: Double, max: Double, bins: BinnedDistribution) {
        self.mean = mean
        self.std = std
        self.min = min
        self.max = max
        self.bins = bins
    }

    static func of(_ values: [Double], bins: Int) -> NumericSummary {
        let sorted = values.sorted()
        let (mean, std) = meanAndStd(values)
        return NumericSummary(
            mean: mean, std: std, min: sorted.first ?? 0, max: sorted.last ?? 0,
            bins: .quantiles(ofSorted: sorted, bins: bins))
    }
}

/// Training statistics of a categorical feature.
public struct CategoricalSummary: Codable, Sendable, Equatable {
    /// The values that have their own one-hot column, most frequent first.
    public var levels: [String]
    /// The share of each level, then the share of every other value (`levels.count + 1` entries).
    public var proportions: [Double]
    /// How many distinct values training saw.
    public var distinctValues: Int

    /// A summary from its levels and shares.
    public init(levels: [String], proportions: [Double], distinctValues: Int) {
        self.levels = levels
        self.proportions = proportions
        self.distinctValues = distinctValues
    }

    /// The position in ``proportions`` of `value`: its level, or the last ("other") entry.
    public func bin(of value: String) -> Int { levels.firstIndex(of: value) ?? levels.count }
}

/// What training saw of one feature; drift detection compares live data against it.
public struct FeatureSummary: Codable, Sendable, Equatable {
    public var name: String
    public var count: Int
    /// Present for numeric features.
    public var numeric: NumericSummary?
    /// Present for categorical features.
    public var categorical: CategoricalSummary?

    /// A summary of one feature; exactly one of `numeric` and `categorical` should be set.
    public init(name: String, count: Int, numeric: NumericSummary? = nil, categorical: CategoricalSummary? = nil) {
        self.name = name
        self.count = count
        self.numeric = numeric
        self.categorical = categorical
    }
}

/// The model's scores on its own training data: the baseline for score drift (PSI on scores).
public struct ScoreSummary: Codable, Sendable, Equatable {
    public var count: Int
    public var mean: Double
    /// Quantile bins of the training scores.
    public var bins: BinnedDistribution

    /// A score summary from its statistics.
    public init(count: Int, mean: Double, bins: BinnedDistribution) {
        self.count = count
        self.mean = mean
        self.bins = bins
    }
}

/// Everything an artifact records about its training data.
public struct TrainingSummary: Codable, Sendable, Equatable {
    public var exampleCount: Int
    public var positiveCount: Int
    /// One summary per schema feature, in schema order.
    public var features: [FeatureSummary]
    public var scores: ScoreSummary

    /// A training summary from its parts.
    public init(exampleCount: Int, positiveCount: Int, features: [FeatureSummary], scores: ScoreSummary) {
        self.exampleCount = exampleCount
        self.positiveCount = positiveCount
        self.features = features
        self.scores = scores
    }

    /// The share of positive examples.
    public var positiveRate: Double { exampleCount == 0 ? 0 : Double(positiveCount) / Double(exampleCount) }
}

func meanAndStd(_ values: [Double]) -> (mean: Double, std: Double) {
    guard !values.isEmpty else { return (0, 0) }
    var sum = 0.0
    for value in values { sum += value }
    let mean = sum / Double(values.count)
    var squares = 0.0
    for value in values {
        let deviation = value - mean
        squares += deviation * deviation
    }
    return (mean, (squares / Double(values.count)).squareRoot())
}

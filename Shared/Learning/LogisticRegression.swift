import Contracts
import Foundation

/// How ``LogisticRegression/fit(_:options:)`` trains.
public struct TrainingOptions: Sendable, Equatable {
    /// L2 strength `λ > 0`. Training minimizes
    /// `Σᵢ sᵢ · logloss(yᵢ, σ(ηᵢ)) + (λ/2) · ‖w‖²` over standardized features, where `sᵢ` is the
    /// example's class weight and the intercept is not penalized. Dividing by `λ` gives
    /// scikit-learn's objective `½‖w‖² + C · Σᵢ sᵢ · logloss`, so `λ` matches `C = 1/λ` exactly.
    public var l2: Double
    /// `.balanced` weighs class `c` by `n / (2 · n_c)`, as scikit-learn's `class_weight="balanced"`.
    public var classWeight: RetrainingPolicy.ClassWeight
    /// Newton iterations at most.
    public var maxIterations: Int
    /// Converged when `max |∂f/∂β| ≤ gradientTolerance · Σᵢ sᵢ`.
    public var gradientTolerance: Double
    /// Categorical values with at least this share of the training rows get their own column…
    public var minCategoryShare: Double
    /// …up to this many per feature (most frequent first); the rest share the "other" column.
    public var maxCategoryLevels: Int
    /// Quantile bins of the per-feature and score summaries.
    public var summaryBins: Int

    /// Options with scikit-learn-like defaults (`l2 = 1` is `C = 1`).
    public init(
        l2: Double = 1.0, classWeight: RetrainingPolicy.ClassWeight = .none, maxIterations: Int = 100,
        gradientTolerance: Double = 1e-10, minCategoryShare: Double = 0.01, maxCategoryLevels: Int = 20,
        summaryBins: Int = 10
    ) {
        self.l2 = l2
        self.classWeight = classWeight
        self.maxIterations = maxIterations
        self.gradientTolerance = gradientTolerance
        self.minCategoryShare = minCategoryShare
        self.maxCategoryLevels = maxCategoryLevels
        self.summaryBins = summaryBins
    }

    /// The options `loop.yaml`'s retraining section asks for.
    public init(policy: RetrainingPolicy) {
        self.init(l2: policy.l2, classWeight: policy.classWeight)
    }

    /// Throws unless every option is in its valid range.
    public func validate() throws(LearningError) {
        func check(_ ok: Bool, _ reason: String) throws(LearningError) {
            if !ok { throw LearningError(.invalidConfiguration, reason) }
        }
        try check(l2.isFinite && l2 > 0, "l2 must be a positive number, not \(l2)")
        try check(maxIterations >= 1, "maxIterations must be at least 1")
        try check(gradientTolerance.isFinite && gradientTolerance > 0, "gradientTolerance must be positive")
        try check((0...1).contains(minCategoryShare), "minCategoryShare must be within 0…1")
        try check(maxCategoryLevels >= 0, "maxCategoryLevels must not be negative")
        try check(summaryBins >= 2, "summaryBins must be at least 2")
    }
}

/// L2-regularized logistic regression fitted by Newton's method (IRLS with a Cholesky solve of the
/// `(d+1)×(d+1)` Hessian and a backtracking line search). The loss is strictly convex for `λ > 0`,
/// so the fit reaches the unique optimum; every loop runs in a fixed order, so the same data gives
/// bit-identical coefficients.
public enum LogisticRegression {
    /// Fits a model to `data` and returns its artifact, with the feature schema taken from the
    /// columns in order and training summaries for drift detection.
    /// A standard deviation at or below this share of a column's magnitude counts as constant.
    static let constantSpread = 1e-9

    public static func fit(_ data: Dataset, options: TrainingOptions = TrainingOptions()) throws(LearningError) -> ModelArtifact {
        try options.validate()
        try data.validate()
        let n = data.count
        guard n > 0 else { throw LearningError(.invalidInput, "the training set is empty") }
        let positives = data.labels.reduce(0) { $0 + ($1 ? 1 : 0) }
        guard positives > 0, positives < n else {
            throw LearningError(.singleClass, "training needs both classes; got \(positives) positives of \(n)")
        }

        // MARK: - Encoding and summaries

        var specs: [FeatureSpec] = []
        var summaries: [FeatureSummary] = []
        var means: [Double] = []
        var scales: [Double] = []
        for column in data.columns {
            switch column.values {
            case .numeric(let values):
                let summary = NumericSummary.of(values, bins: options.summaryBins)
                specs.append(FeatureSpec(name: column.name, kind: .numeric))
                summaries.append(FeatureSummary(name: column.name, count: n, numeric: summary))
                means.append(summary.mean)
                // A constant column (or one whose spread is only rounding noise, like a window mean
                // over identical values) keeps scale 1, as scikit-learn's StandardScaler does for
                // zero variance: dividing by noise would blow later, real variation up to millions.
                scales.append(summary.std > Self.constantSpread * max(1, abs(summary.mean)) ? summary.std : 1)
            case .categorical(let values):
                let summary = categoricalSummary(values, options: options)
                specs.append(FeatureSpec(name: column.name, kind: .categorical, levels: summary.levels))
                summaries.append(FeatureSummary(name: column.name, count: n, categorical: summary))
                means.append(0)
                scales.append(1)
            }
        }
        let schema = FeatureSchema(features: specs)
        let width = 1 + specs.reduce(0) { $0 + $1.encodedWidth }
        let design = designMatrix(data, specs: specs, means: means, scales: scales, width: width)

        var sampleWeights = [Double](repeating: 1, count: n)
        if options.classWeight == .balanced {
            let positiveWeight = Double(n) / (2 * Double(positives))
            let negativeWeight = Double(n) / (2 * Double(n - positives))
            for i in 0..<n { sampleWeights[i] = data.labels[i] ? positiveWeight : negativeWeight }
        }
        let targets = data.labels.map { $0 ? 1.0 : 0.0 }

        // MARK: - Newton

        let fit = newton(
            design: design, width: width, targets: targets, sampleWeights: sampleWeights, options: options)

        var coefficients: [[Double]] = []
        var column = 1
        for spec in specs {
            coefficients.append(Array(fit.beta[column..<(column + spec.encodedWidth)]))
            column += spec.encodedWidth
        }
        let model = LogisticRegressionModel(
            intercept: fit.beta[0], coefficients: coefficients, means: means, scales: scales, l2: options.l2,
            classWeight: options.classWeight.rawValue, iterations: fit.iterations, converged: fit.converged)

        let scores = fit.logits.map(sigmoid)
        let (scoreMean, _) = meanAndStd(scores)
        let scoreSummary = ScoreSummary(
            count: n, mean: scoreMean, bins: .quantiles(of: scores, bins: options.summaryBins))
        let training = TrainingSummary(
            exampleCount: n, positiveCount: positives, features: summaries, scores: scoreSummary)
        return ModelArtifact(schema: schema, training: training, body: .logisticRegression(model))
    }

    static func categoricalSummary(_ values: [String], options: TrainingOptions) -> CategoricalSummary {
        var counts: [String: Int] = [:]
        for value in values { counts[value, default: 0] += 1 }
        let minimum = options.minCategoryShare * Double(values.count)
        let levels = counts
            .filter { Double($0.value) >= minimum }
            .sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .prefix(options.maxCategoryLevels)
            .map(\.key)
        var proportions = levels.map { Double(counts[$0]!) / Double(values.count) }
        proportions.append(max(0, 1 - proportions.reduce(0, +)))
        return CategoricalSummary(levels: levels, proportions: proportions, distinctValues: counts.count)
    }

    /// Row-major `n × width` matrix: column 0 is the intercept's 1, then each feature's columns.
    static func designMatrix(
        _ data: Dataset, specs: [FeatureSpec], means: [Double], scales: [Double], width: Int
    ) -> [Double] {
        let n = data.count
        var design = [Double](repeating: 0, count: n * width)
        for i in 0..<n { design[i * width] = 1 }
        var offset = 1
        for (j, column) in data.columns.enumerated() {
            switch column.values {
            case .numeric(let values):
                let mean = means[j]
                let scale = scales[j]
                for i in 0..<n { design[i * width + offset] = (values[i] - mean) / scale }
            case .categorical(let values):
                let levels = specs[j].levels
                var index: [String: Int] = [:]
                for (k, level) in levels.enumerated() { index[level] = k }
                for i in 0..<n { design[i * width + offset + (index[values[i]] ?? levels.count)] = 1 }
            }
            offset += specs[j].encodedWidth
        }
        return design
    }

    struct NewtonResult {
        var beta: [Double]
        var logits: [Double]
        var iterations: Int
        var converged: Bool
    }

    static func newton(
        design: [Double], width p: Int, targets: [Double], sampleWeights: [Double], options: TrainingOptions
    ) -> NewtonResult {
        let n = targets.count
        let lambda = options.l2
        let weightSum = sampleWeights.reduce(0, +)
        var beta = [Double](repeating: 0, count: p)
        var logits = [Double](repeating: 0, count: n)
        var objective = loss(logits: logits, targets: targets, sampleWeights: sampleWeights, beta: beta, lambda: lambda)
        var gradient = [Double](repeating: 0, count: p)
        var hessian = [Double](repeating: 0, count: p * p)
        var step = [Double](repeating: 0, count: p)
        var trial = [Double](repeating: 0, count: p)
        var trialLogits = [Double](repeating: 0, count: n)
        var iterations = 0
        var converged = false

        design.withUnsafeBufferPointer { z in
            while iterations < options.maxIterations {
                // Gradient and Hessian (upper triangle, then mirrored).
                for a in 0..<p { gradient[a] = 0 }
                for a in 0..<(p * p) { hessian[a] = 0 }
                gradient.withUnsafeMutableBufferPointer { g in
                    hessian.withUnsafeMutableBufferPointer { h in
                        for i in 0..<n {
                            let probability = sigmoid(logits[i])
                            let residual = sampleWeights[i] * (probability - targets[i])
                            let curvature = sampleWeights[i] * probability * (1 - probability)
                            let row = i * p
                            for a in 0..<p {
                                let za = z[row + a]
                                if za == 0 { continue }
                                g[a] += residual * za
                                let weighted = curvature * za
                                let hRow = a * p
                                for b in a..<p { h[hRow + b] += weighted * z[row + b] }
                            }
                        }
                    }
                }
                for a in 1..<p {
                    gradient[a] += lambda * beta[a]
                    hessian[a * p + a] += lambda
                }
                for a in 0..<p { for b in 0..<a { hessian[a * p + b] = hessian[b * p + a] } }

                let largest = gradient.reduce(0) { max($0, abs($1)) }
                if largest <= options.gradientTolerance * weightSum {
                    converged = true
                    break
                }
                iterations += 1
                guard solveCholesky(&hessian, size: p, rightHandSide: gradient, solution: &step) else { break }

                // Newton decrement: the objective the full step would gain (×2). Once it is below the
                // objective's rounding, a line search cannot tell steps apart; the full step is safe
                // that close to the optimum and brings the gradient down to its rounding noise.
                let decrease = zip(gradient, step).reduce(0) { $0 + $1.0 * $1.1 }
                if decrease <= 1e-12 * max(1, abs(objective)) {
                    for a in 0..<p { beta[a] -= step[a] }
                    multiply(z, by: beta, into: &logits)
                    converged = true
                    break
                }

                // Backtracking line search on the objective (Armijo).
                var t = 1.0
                var accepted = false
                for _ in 0..<40 {
                    for a in 0..<p { trial[a] = beta[a] - t * step[a] }
                    multiply(z, by: trial, into: &trialLogits)
                    let candidate = loss(
                        logits: trialLogits, targets: targets, sampleWeights: sampleWeights, beta: trial, lambda: lambda)
                    if candidate <= objective - 1e-4 * t * decrease {
                        swap(&beta, &trial)
                        swap(&logits, &trialLogits)
                        objective = candidate
                        accepted = true
                        break
                    }
                    t *= 0.5
                }
                if !accepted {
                    // No step lowers the objective any more: we are at the optimum to rounding.
                    converged = largest <= 1e-6 * weightSum
                    break
                }
            }
        }
        return NewtonResult(beta: beta, logits: logits, iterations: iterations, converged: converged)
    }

    /// `result = Z · beta` for the row-major design matrix `Z`.
    static func multiply(_ z: UnsafeBufferPointer<Double>, by beta: [Double], into result: inout [Double]) {
        let p = beta.count
        for i in result.indices {
            var eta = 0.0
            let row = i * p
            for a in 0..<p { eta += z[row + a] * beta[a] }
            result[i] = eta
        }
    }

    static func loss(logits: [Double], targets: [Double], sampleWeights: [Double], beta: [Double], lambda: Double) -> Double {
        var total = 0.0
        for i in logits.indices {
            let eta = logits[i]
            total += sampleWeights[i] * (softplus(eta) - targets[i] * eta)
        }
        var penalty = 0.0
        for a in 1..<beta.count { penalty += beta[a] * beta[a] }
        return total + 0.5 * lambda * penalty
    }

    /// Solves `A x = b` for symmetric positive definite `A` (overwritten by its Cholesky factor).
    static func solveCholesky(_ a: inout [Double], size p: Int, rightHandSide b: [Double], solution x: inout [Double]) -> Bool {
        for j in 0..<p {
            var diagonal = a[j * p + j]
            for k in 0..<j { diagonal -= a[j * p + k] * a[j * p + k] }
            guard diagonal > 0, diagonal.isFinite else { return false }
            let root = diagonal.squareRoot()
            a[j * p + j] = root
            for i in (j + 1)..<max(p, j + 1) {
                var value = a[i * p + j]
                for k in 0..<j { value -= a[i * p + k] * a[j * p + k] }
                a[i * p + j] = value / root
            }
        }
        for i in 0..<p {
            var value = b[i]
            for k in 0..<i { value -= a[i * p + k] * x[k] }
            x[i] = value / a[i * p + i]
        }
        for i in stride(from: p - 1, through: 0, by: -1) {
            var value = x[i]
            for k in (i + 1)..<max(p, i + 1) { value -= a[k * p + i] * x[k] }
            x[i] = value / a[i * p + i]
        }
        return true
    }
}

/// `1 / (1 + e^(−x))`, without overflow for large |x|.
@inline(__always)
func sigmoid(_ x: Double) -> Double {
    if x >= 0 { return 1 / (1 + exp(-x)) }
    let e = exp(x)
    return e / (1 + e)
}

/// `log(1 + e^x)`, without overflow for large x.
@inline(__always)
func softplus(_ x: Double) -> Double {
    x > 0 ? x + log1p(exp(-x)) : log1p(exp(x))
}

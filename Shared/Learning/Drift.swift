import Foundation

/// The result of a chi-squared goodness-of-fit test.
public struct ChiSquaredTest: Sendable, Equatable {
    public var statistic: Double
    public var degreesOfFreedom: Int
    /// `P(χ²_df ≥ statistic)`.
    public var pValue: Double
}

/// Drift between a training baseline and live data.
///
/// Numeric features and scores are compared bin by bin against the training quantile bins
/// (``BinnedDistribution``); categorical features against the training level shares
/// (``CategoricalSummary``). Shares of 0 are floored at `epsilon` (default `1e-4`) before
/// logarithms and divisions, so a bin empty on one side gives a large but finite value.
public enum Drift {
    /// Population stability index `Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ)` of observed counts against expected
    /// proportions, both as shares floored at `epsilon`. 0 when nothing was observed.
    public static func psi(expected: [Double], observed: [Int], epsilon: Double = 1e-4) -> Double {
        let total = observed.reduce(0, +)
        guard total > 0, expected.count == observed.count else { return 0 }
        var index = 0.0
        for i in expected.indices {
            let e = max(expected[i], epsilon)
            let a = max(Double(observed[i]) / Double(total), epsilon)
            index += (a - e) * log(a / e)
        }
        return index
    }

    /// Two-sample Kolmogorov–Smirnov statistic on binned data: the largest difference between the
    /// cumulative shares at a bin edge. Binning can only hide differences inside a bin, so this is
    /// at most the exact statistic.
    public static func ks(expected: [Double], observed: [Int]) -> Double {
        let total = observed.reduce(0, +)
        guard total > 0, expected.count == observed.count else { return 0 }
        var expectedCumulative = 0.0
        var observedCumulative = 0.0
        var largest = 0.0
        for i in expected.indices {
            expectedCumulative += expected[i]
            observedCumulative += Double(observed[i]) / Double(total)
            largest = max(largest, abs(expectedCumulative - observedCumulative))
        }
        return largest
    }

    /// Asymptotic p-value of a two-sample KS statistic for sample sizes `n` and `m`
    /// (`Q_KS((√nₑ + 0.12 + 0.11/√nₑ) · D)` with `nₑ = nm/(n+m)`, Numerical Recipes §14.3).
    public static func ksPValue(statistic: Double, n: Int, m: Int) -> Double {
        guard n > 0, m > 0 else { return 1 }
        let effective = (Double(n) * Double(m) / Double(n + m)).squareRoot()
        let lambda = (effective + 0.12 + 0.11 / effective) * statistic
        guard lambda > 0.2 else { return 1 }
        var sum = 0.0
        var sign = 1.0
        for j in 1...100 {
            let term = exp(-2 * Double(j * j) * lambda * lambda)
            sum += sign * term
            if term < 1e-12 { break }
            sign = -sign
        }
        return min(1, max(0, 2 * sum))
    }

    /// Chi-squared goodness of fit of observed category counts against expected proportions
    /// (`Σ (Oᵢ − Eᵢ)² / Eᵢ`, `Eᵢ = n · max(pᵢ, epsilon)` renormalized, `df = k − 1`).
    public static func chiSquared(expected: [Double], observed: [Int], epsilon: Double = 1e-4) -> ChiSquaredTest {
        let total = observed.reduce(0, +)
        guard total > 0, expected.count == observed.count, expected.count > 1 else {
            return ChiSquaredTest(statistic: 0, degreesOfFreedom: max(0, expected.count - 1), pValue: 1)
        }
        let floored = expected.map { max($0, epsilon) }
        let norm = floored.reduce(0, +)
        var statistic = 0.0
        for i in floored.indices {
            let e = Double(total) * floored[i] / norm
            let difference = Double(observed[i]) - e
            statistic += difference * difference / e
        }
        let df = expected.count - 1
        return ChiSquaredTest(statistic: statistic, degreesOfFreedom: df, pValue: chiSquaredSurvival(statistic, degreesOfFreedom: df))
    }

    /// `P(χ²_k ≥ x)`: the regularized upper incomplete gamma function `Q(k/2, x/2)`.
    public static func chiSquaredSurvival(_ x: Double, degreesOfFreedom k: Int) -> Double {
        guard k > 0 else { return 1 }
        guard x > 0 else { return 1 }
        return upperRegularizedGamma(Double(k) / 2, x / 2)
    }

    static func upperRegularizedGamma(_ a: Double, _ x: Double) -> Double {
        let logPrefix = -x + a * log(x) - lgamma(a)
        if x < a + 1 {
            // Series for P(a, x).
            var term = 1 / a
            var sum = term
            var denominator = a
            for _ in 0..<1000 {
                denominator += 1
                term *= x / denominator
                sum += term
                if abs(term) < abs(sum) * 1e-16 { break }
            }
            return max(0, 1 - sum * exp(logPrefix))
        }
        // Continued fraction for Q(a, x) (modified Lentz).
        let tiny = 1e-300
        var b = x + 1 - a
        var c = 1 / tiny
        var d = 1 / b
        var h = d
        for i in 1..<1000 {
            let an = -Double(i) * (Double(i) - a)
            b += 2
            d = an * d + b
            if abs(d) < tiny { d = tiny }
            c = b + an / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < 1e-16 { break }
        }
        return min(1, exp(logPrefix) * h)
    }
}

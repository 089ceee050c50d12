import Foundation
import Learning

/// `loop-bench retrainer [--examples 100000] [--features 20]`: trains the retrainer's logistic
/// regression on synthetic examples and reports the fit time and the holdout ROC AUC.
func runRetrainerBench(_ arguments: [String]) async throws {
    func option(_ name: String, _ fallback: Int) -> Int {
        guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count, let value = Int(arguments[index + 1]) else {
            return fallback
        }
        return value
    }
    let examples = option("--examples", 100_000)
    let features = option("--features", 20)
    let holdout = examples / 5

    // Deterministic synthetic data: a sparse true weight vector, Gaussian inputs, logistic labels.
    var state: UInt64 = 42
    func uniform() -> Double {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
    }
    func normal() -> Double { (-2 * log(max(uniform(), 1e-300))).squareRoot() * cos(2 * .pi * uniform()) }
    let weights: [Double] = (0..<features).map { j -> Double in
        guard j % 3 != 0 else { return 0 }
        let sign: Double = j % 2 == 0 ? 0.6 : -0.4
        return sign * (1 + Double(j) / Double(features))
    }
    func generate(_ count: Int) -> Dataset {
        var columns = [[Double]](repeating: [Double](repeating: 0, count: count), count: features)
        var labels = [Bool](repeating: false, count: count)
        for i in 0..<count {
            var logit = -0.3
            for j in 0..<features {
                let scale: Double = 1 + Double(j % 4)
                let shift: Double = Double(j % 5)
                let standard: Double = normal()
                columns[j][i] = standard * scale + shift
                logit += weights[j] * standard
            }
            let probability: Double = 1 / (1 + exp(-logit))
            labels[i] = uniform() < probability
        }
        return Dataset(columns: columns.enumerated().map { .numeric("f\($0)", $1) }, labels: labels)
    }
    let training = generate(examples)
    let test = generate(holdout)

    let clock = ContinuousClock()
    let started = clock.now
    let artifact = try LogisticRegression.fit(training, options: TrainingOptions(l2: 1))
    let elapsed = clock.now - started
    let scores = try LinearScorer(artifact: artifact).scores(for: test)
    let auc = Metrics.rocAUC(scores: scores, labels: test.labels) ?? .nan
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    var iterations = 0
    if case .logisticRegression(let model) = artifact.body { iterations = model.iterations }
    print("retrainer: fit \(examples) examples × \(features) features in \(String(format: "%.3f", seconds)) s "
          + "(\(iterations) Newton iterations, target < 1 s); holdout AUC \(String(format: "%.4f", auc)) on \(holdout) examples")
}

import Foundation
import Contracts
import Learning

/// The verdict of the promotion gate on one candidate.
public struct GateVerdict: Sendable, Equatable {
    /// Whether the candidate may serve (as canary or champion).
    public var passed: Bool
    /// Why, one sentence per check.
    public var reasons: [String]
    /// The candidate's gain over the champion on the gate's metric (positive is better), when a
    /// champion could be scored on the same holdout.
    public var improvement: Double?
}

extension PromotionGate {
    /// Judges a candidate against the champion on the same holdout: enough holdout examples,
    /// calibration error within bounds, and at least `minImprovement` on the gate's metric
    /// (AUC: higher is better; log loss and mean business cost: lower is better). Without a
    /// champion the improvement check is skipped.
    public func evaluate(candidate: QualityReport, champion: QualityReport?) -> GateVerdict {
        var reasons: [String] = []
        var passed = true
        if candidate.count < minHoldout {
            passed = false
            reasons.append("holdout has \(candidate.count) examples, fewer than minHoldout \(minHoldout)")
        } else {
            reasons.append("holdout has \(candidate.count) examples (minHoldout \(minHoldout))")
        }
        let calibration = candidate.expectedCalibrationError
        if calibration > maxCalibrationError {
            passed = false
            reasons.append("calibration error \(format(calibration)) exceeds maxCalibrationError \(format(maxCalibrationError))")
        } else {
            reasons.append("calibration error \(format(calibration)) within maxCalibrationError \(format(maxCalibrationError))")
        }
        var improvement: Double?
        if let champion {
            switch metric {
            case .auc:
                if let new = candidate.auc, let old = champion.auc { improvement = new - old }
            case .logLoss:
                improvement = champion.logLoss - candidate.logLoss
            case .cost:
                improvement = champion.meanCost - candidate.meanCost
            }
            if let gain = improvement {
                if gain < minImprovement {
                    passed = false
                    reasons.append("\(metric.rawValue) improves by \(format(gain)), less than minImprovement \(format(minImprovement))")
                } else {
                    reasons.append("\(metric.rawValue) improves by \(format(gain)) (minImprovement \(format(minImprovement)))")
                }
            } else {
                passed = false
                reasons.append("\(metric.rawValue) cannot be compared: the holdout has a single class")
            }
        } else if metric == .auc && candidate.auc == nil {
            passed = false
            reasons.append("auc cannot be measured: the holdout has a single class")
        } else {
            reasons.append("no champion to compare with")
        }
        return GateVerdict(passed: passed, reasons: reasons, improvement: improvement)
    }
}

func format(_ value: Double) -> String {
    String(format: "%.4f", value)
}

/// What a training run produced: the candidate, how it was evaluated and on what data.
public struct TrainingResult: Sendable {
    /// Event-time and offset range of the examples used.
    public struct DataRange: Sendable, Equatable {
        public var fromEventTimeMs: Int64
        public var toEventTimeMs: Int64
        /// Per partition of `loop.labeled`: the lowest and highest offset used.
        public var offsets: [Int32: ClosedRange<Int64>]
    }

    public var artifact: ModelArtifact
    public var candidate: QualityReport
    /// The champion on the same holdout (`nil`: no champion, or it takes other inputs).
    public var champion: QualityReport?
    public var verdict: GateVerdict
    public var trainCount: Int
    public var holdoutCount: Int
    /// Examples left out because an input was missing.
    public var excludedCount: Int
    public var positives: Int
    public var range: DataRange
    public var options: TrainingOptions
}

/// Turns stored examples into a gated candidate: the model's inputs in order, a time-ordered
/// split (train on the older part, hold out the newest `holdoutShare`), the shared logistic
/// regression, and candidate and champion scored on the same holdout.
public struct ModelTrainer: Sendable {
    /// The model's inputs in order: `model.features` then `model.contextFields` (the vector served).
    public var inputs: [String]
    public var policy: RetrainingPolicy
    /// The business costs of `loop.yaml` (`costs`), for the holdout's cost metric.
    public var costs: CostMatrix
    public var threshold: Double
    public var options: TrainingOptions

    /// A trainer for `config`'s model, retraining policy, costs and decision threshold.
    public init(config: LoopConfig) {
        inputs = config.model.features + config.model.contextFields
        policy = config.retraining
        costs = config.costs
        threshold = config.decision.threshold
        options = TrainingOptions(policy: config.retraining)
    }

    /// Trains on `examples` (oldest first) and gates the candidate against `champion`.
    public func train(_ examples: [StoredExample], champion: ModelArtifact?) throws(RetrainerError) -> TrainingResult {
        var columns = [[Double]](repeating: [], count: inputs.count)
        var labels: [Bool] = []
        var used: [StoredExample] = []
        var excluded = 0
        for example in examples {
            var row: [Double] = []
            row.reserveCapacity(inputs.count)
            for name in inputs {
                guard let value = example.features[name] ?? nil, value.isFinite else { break }
                row.append(value)
            }
            guard row.count == inputs.count else {
                excluded += 1
                continue
            }
            for j in 0..<inputs.count { columns[j].append(row[j]) }
            labels.append(example.label)
            used.append(example)
        }
        let data = Dataset(columns: zip(inputs, columns).map { .numeric($0, $1) }, labels: labels)
        let holdoutCount = Int((Double(data.count) * policy.holdoutShare).rounded())
        let trainCount = data.count - holdoutCount
        guard trainCount > 0 else {
            throw RetrainerError(.training, "no complete examples to train on (\(excluded) had a missing input)")
        }
        let trainPart = data.slice(0..<trainCount)
        let holdout = data.slice(trainCount..<data.count)
        let artifact: ModelArtifact
        do {
            artifact = try LogisticRegression.fit(trainPart, options: options)
        } catch {
            throw .training(error)
        }
        let candidateScores: [Double]
        do {
            candidateScores = try LinearScorer(artifact: artifact).scores(for: holdout)
        } catch {
            throw .training(error)
        }
        let costs = DecisionCosts(self.costs)
        let candidate = Metrics.report(scores: candidateScores, labels: holdout.labels, threshold: threshold, costs: costs)
        let championReport = champion.flatMap { champion -> QualityReport? in
            guard let scores = try? LinearScorer(artifact: champion).scores(for: holdout) else { return nil }
            return Metrics.report(scores: scores, labels: holdout.labels, threshold: threshold, costs: costs)
        }
        var offsets: [Int32: ClosedRange<Int64>] = [:]
        for example in used {
            let range = offsets[example.partition]
            offsets[example.partition] = min(range?.lowerBound ?? .max, example.offset)...max(range?.upperBound ?? .min, example.offset)
        }
        return TrainingResult(
            artifact: artifact, candidate: candidate, champion: championReport,
            verdict: policy.gate.evaluate(candidate: candidate, champion: championReport),
            trainCount: trainCount, holdoutCount: holdoutCount, excludedCount: excluded,
            positives: labels.reduce(0) { $0 + ($1 ? 1 : 0) },
            range: TrainingResult.DataRange(
                fromEventTimeMs: used.first?.eventTimeMs ?? 0, toEventTimeMs: used.last?.eventTimeMs ?? 0, offsets: offsets),
            options: options)
    }
}

// Stand-in for `LoopConfig.load(path:)` so ServiceKit builds in its own worktree.
// The lead deletes this file when the Contracts branch merges.
import Foundation

/// Why `loop.yaml` could not be loaded.
public struct ConfigError: Error, CustomStringConvertible {
    public var description: String
}

extension LoopConfig {
    /// Reads `loop.yaml`; the stand-in only checks the file is readable and returns fixed values.
    public static func load(path: String) throws(ConfigError) -> LoopConfig {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ConfigError(description: "\(path): cannot read the configuration file")
        }
        let day = TimeSpan(seconds: 86_400)
        return LoopConfig(
            name: "stand-in",
            topics: TopicSettings(prefix: "loop", partitions: 4, replicationFactor: 1, retention: day),
            events: EventPolicy(missingTime: .reject, unknownFields: .reject, maxPayloadBytes: 65_536, dedupeHorizon: day),
            fields: [:],
            label: LabelSpec(field: "label", positive: "1", valueField: nil),
            features: FeatureSettings(allowedLateness: day, historyRetention: day, definitions: []),
            model: ModelSettings(features: [], contextFields: []),
            decision: DecisionPolicy(
                threshold: 0.5, reviewBand: nil, baselineScore: 0.5, maxFeatureAge: day, maxZScore: 6,
                fallback: .review, explainTopK: 3),
            costs: CostMatrix(truePositive: 0, falsePositive: 1, falseNegative: 1, trueNegative: 0),
            feedback: FeedbackSettings(
                joinDeadline: day, defaultLabel: nil, windowCount: 1000, windowTime: day, snapshotInterval: day),
            drift: DriftThresholds(
                psi: 0.2, ks: 0.1, chiSquaredPValue: 0.01, scorePSI: 0.2, performanceDrop: 0.05, labelStarvation: day),
            retraining: RetrainingPolicy(
                everyLabels: nil, everyEventTime: nil, everyWallClock: nil, onDriftAlert: false,
                trainingExamples: nil, trainingEventTime: nil, holdoutShare: 0.2, l2: 0, classWeight: .none,
                gate: PromotionGate(metric: .auc, minHoldout: 100, minImprovement: 0, maxCalibrationError: 0.1),
                canaryShare: 0))
    }
}

import Contracts
import Foundation
import Learning

/// Builds the `loop.models` record of a new version: its lineage (documented below) and model card.
///
/// Lineage fields: `triggers` (each with id, kind, reason, cutoff), `triggerIds`, `data` (topic,
/// event-time range, cutoff, offsets per partition), `examples` (train, holdout, excluded),
/// `classBalance`, `hyperParameters`, `holdout` (candidate and champion metrics, champion version),
/// `gate` (thresholds, verdict, improvement), `featureSchemaHash`, `inputs`.
enum VersionRecordBuilder {
    static func record(
        version: Int64, parent: Int64?, triggers: [Trigger], result: TrainingResult, policy: RetrainingPolicy,
        labeledTopic: String, cutoffMs: Int64?, deployment: String, createdAtMs: Int64
    ) throws -> ModelVersionRecord {
        let status: ModelStatus = result.verdict.passed ? (policy.canaryShare > 0 ? .canary : .champion) : .rejected
        let artifact = try JSONValue.parse(Array(result.artifact.jsonData()))
        let total = result.trainCount + result.holdoutCount
        var offsets: [(String, JSONValue)] = []
        for (partition, range) in result.range.offsets.sorted(by: { $0.key < $1.key }) {
            offsets.append(("\(partition)", ["from": .int(range.lowerBound), "to": .int(range.upperBound)]))
        }
        let lineage: JSONValue = [
            "triggers": .array(triggers.map(\.json)),
            "triggerIds": .array(triggers.map { .string($0.id) }),
            "data": [
                "topic": .string(labeledTopic),
                "fromEventTimeMs": .int(result.range.fromEventTimeMs),
                "toEventTimeMs": .int(result.range.toEventTimeMs),
                "fromEventTime": .string(eventTimeText(result.range.fromEventTimeMs)),
                "toEventTime": .string(eventTimeText(result.range.toEventTimeMs)),
                "cutoffEventTimeMs": JSONValue(cutoffMs),
                "offsets": .object(JSONObject(offsets)),
            ],
            "examples": [
                "total": .int(Int64(total)), "train": .int(Int64(result.trainCount)),
                "holdout": .int(Int64(result.holdoutCount)), "excludedMissingInput": .int(Int64(result.excludedCount)),
            ],
            "classBalance": [
                "positives": .int(Int64(result.positives)), "negatives": .int(Int64(total - result.positives)),
                "positiveRate": JSONValue(total == 0 ? 0 : Double(result.positives) / Double(total)),
            ],
            "hyperParameters": hyperParameters(result),
            "holdout": [
                "candidate": metrics(result.candidate),
                "champion": result.champion.map(metrics) ?? .null,
                "championVersion": JSONValue(result.champion == nil ? nil : parent),
            ],
            "gate": [
                "metric": .string(policy.gate.metric.rawValue), "minHoldout": .int(Int64(policy.gate.minHoldout)),
                "minImprovement": JSONValue(policy.gate.minImprovement),
                "maxCalibrationError": JSONValue(policy.gate.maxCalibrationError),
                "passed": .bool(result.verdict.passed), "improvement": JSONValue(result.verdict.improvement),
                "reasons": .array(result.verdict.reasons.map { .string($0) }),
            ],
            "featureSchemaHash": .string(result.artifact.schema.hash),
            "inputs": .array(result.artifact.schema.names.map { .string($0) }),
        ]
        let record = ModelVersionRecord(
            version: version, status: status, parent: parent, trigger: kindSummary(triggers), createdAtMs: createdAtMs,
            reasons: result.verdict.reasons, lineage: lineage, artifact: artifact, card: "")
        var withCard = record
        withCard.card = ModelCard.markdown(
            record: record, result: result, triggers: triggers, policy: policy, deployment: deployment)
        return withCard
    }

    /// The distinct trigger kinds of a run, joined by `+` (`manual+drift_alert`).
    static func kindSummary(_ triggers: [Trigger]) -> String {
        var kinds: [String] = []
        for trigger in triggers where !kinds.contains(trigger.kind.rawValue) { kinds.append(trigger.kind.rawValue) }
        return kinds.joined(separator: "+")
    }

    static func hyperParameters(_ result: TrainingResult) -> JSONValue {
        var object: JSONObject = [
            "model": .string(result.artifact.kind.rawValue), "l2": JSONValue(result.options.l2),
            "classWeight": .string(result.options.classWeight.rawValue),
            "maxIterations": .int(Int64(result.options.maxIterations)),
            "gradientTolerance": JSONValue(result.options.gradientTolerance),
        ]
        if case .logisticRegression(let model) = result.artifact.body {
            object["iterations"] = .int(Int64(model.iterations))
            object["converged"] = .bool(model.converged)
        }
        return .object(object)
    }

    static func metrics(_ report: QualityReport) -> JSONValue {
        [
            "count": .int(Int64(report.count)), "positives": .int(Int64(report.positives)),
            "auc": JSONValue(report.auc), "logLoss": JSONValue(report.logLoss), "brier": JSONValue(report.brier),
            "calibrationError": JSONValue(report.expectedCalibrationError), "accuracy": JSONValue(report.accuracy),
            "totalCost": JSONValue(report.totalCost), "meanCost": JSONValue(report.meanCost),
        ]
    }
}

/// The Markdown model card of a version: what it is, what it was trained on, how it did.
enum ModelCard {
    static func markdown(
        record: ModelVersionRecord, result: TrainingResult, triggers: [Trigger], policy: RetrainingPolicy, deployment: String
    ) -> String {
        let total = result.trainCount + result.holdoutCount
        var lines: [String] = [
            "# Model card: \(deployment) version \(record.version)",
            "",
            "- **Status:** \(record.status.rawValue)",
            "- **Parent:** \(record.parent.map { "version \($0)" } ?? "none (first model)")",
            "- **Created:** \(eventTimeText(record.createdAtMs))",
            "- **Model:** \(result.artifact.kind.rawValue), feature schema `\(result.artifact.schema.hash)`",
            "",
            "## Why it was trained",
            "",
        ]
        lines += triggers.map { "- `\($0.kind.rawValue)` (\($0.actor)): \($0.reason)" }
        lines += [
            "",
            "## Training data",
            "",
            "- Event time: \(eventTimeText(result.range.fromEventTimeMs)) to \(eventTimeText(result.range.toEventTimeMs))",
            "- Examples: \(total) (\(result.trainCount) train, \(result.holdoutCount) newest held out); \(result.excludedCount) left out for a missing input",
            "- Class balance: \(result.positives) positive, \(total - result.positives) negative (\(format(total == 0 ? 0 : Double(result.positives) / Double(total))) positive)",
            "- Offsets: " + result.range.offsets.sorted { $0.key < $1.key }
                .map { "partition \($0.key) \($0.value.lowerBound)…\($0.value.upperBound)" }.joined(separator: ", "),
            "",
            "## Hyper-parameters",
            "",
            "- L2 \(result.options.l2) (scikit-learn C = \(format(1 / result.options.l2))), class weight \(result.options.classWeight.rawValue)",
            "- Holdout share \(format(policy.holdoutShare)), Newton's method up to \(result.options.maxIterations) iterations",
            "",
            "## Holdout (newest \(result.holdoutCount) examples)",
            "",
            "| metric | candidate | champion |",
            "|---|---|---|",
        ]
        func row(_ name: String, _ value: (QualityReport) -> Double?) {
            let candidate = value(result.candidate).map(format) ?? "n/a"
            let champion = result.champion.flatMap(value).map(format) ?? "n/a"
            lines.append("| \(name) | \(candidate) | \(champion) |")
        }
        row("ROC AUC", \.auc)
        row("log loss", { $0.logLoss })
        row("calibration error", { $0.expectedCalibrationError })
        row("mean business cost", { $0.meanCost })
        row("accuracy", { $0.accuracy })
        lines += [
            "",
            "## Gate (\(policy.gate.metric.rawValue)): \(result.verdict.passed ? "passed" : "failed")",
            "",
        ]
        lines += result.verdict.reasons.map { "- \($0)" }
        lines += ["", "## Inputs", "", "| input | mean | std | min | max |", "|---|---|---|---|---|"]
        for feature in result.artifact.training.features {
            if let summary = feature.numeric {
                lines.append("| \(feature.name) | \(format(summary.mean)) | \(format(summary.std)) | \(format(summary.min)) | \(format(summary.max)) |")
            } else {
                lines.append("| \(feature.name) | categorical | | | |")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

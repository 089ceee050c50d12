import Contracts
import Foundation
import Kafka

// MARK: - Reading the topics

extension ReplaySummary.Input {
    /// Reads the loop's topics under `topics` from the beginning to their current end (a missing
    /// topic reads as empty); records that do not decode are counted in ``undecodable``.
    public static func read(_ topics: Topics, reader: TopicReader) async throws(LoopctlError) -> ReplaySummary.Input {
        var input = ReplaySummary.Input()
        var undecodable: [String: Int] = [:]
        func decoded<R: TopicRecord>(_ record: ConsumedRecord, _: R.Type) -> R? {
            if let value = record.value, let decoded = try? R(bytes: value) { return decoded }
            undecodable[record.topic, default: 0] += 1
            return nil
        }
        func each(_ topic: String, _ handle: (ConsumedRecord) -> Void) async throws(LoopctlError) {
            do {
                try await reader.read(topic, start: .beginning, follow: false) { records in records.forEach(handle) }
            } catch where error.code == .notFound {
                return
            }
        }
        try await each(topics.events) { record in
            let type = record.header("ce_type")?.value.flatMap { String(validating: $0, as: UTF8.self) } ?? "(none)"
            input.eventsByType[type, default: 0] += 1
        }
        try await each(topics.predictions) { if let value = decoded($0, Prediction.self) { input.predictions.append(value) } }
        try await each(topics.labeled) { if let value = decoded($0, LabeledExample.self) { input.labeled.append(value) } }
        try await each(topics.deadLetters) { if let value = decoded($0, DeadLetter.self) { input.deadLetters.append(value) } }
        try await each(topics.monitoring) { if let value = decoded($0, MonitoringRecord.self) { input.monitoring.append(value) } }
        try await each(topics.models) { record in
            let key = record.key.flatMap { String(validating: $0, as: UTF8.self) }
            if key == RegistryState.key {
                if let state = decoded(record, RegistryState.self) { input.registryStates.append(state) }
            } else if let version = decoded(record, ModelVersionRecord.self) {
                input.versionRecords.append(version)
            }
        }
        input.undecodable = undecodable
        return input
    }
}

// MARK: - Waiting for labels

/// Record counts of a topic from its watermarks (what it holds now, without reading it).
public enum TopicCount {
    /// The number of records `topic` holds (0 when it does not exist).
    public static func records(in topic: String, reader: TopicReader) async throws(LoopctlError) -> Int64 {
        let partitions: [TopicPartition]
        do { partitions = try await reader.partitions(of: topic) } catch where error.code == .notFound { return 0 }
        do {
            let admin = try KafkaAdmin(config: reader.config, logger: reader.logger)
            var total: Int64 = 0
            for partition in partitions {
                let (low, high) = try await admin.watermarks(topic: topic, partition: partition.partition)
                total += max(0, high - low)
            }
            return total
        } catch {
            throw LoopctlError(.kafka, "cannot read the offsets of \(topic): \(error.reason)", isRetryable: error.isRetriable)
        }
    }

    /// Polls `topic` every `interval` until it holds at least `target` records or `timeout` passes,
    /// handing each count to `progress`; returns the last count.
    public static func wait(
        for target: Int64, in topic: String, reader: TopicReader, timeout: Duration, interval: Duration = .seconds(2),
        progress: (Int64) -> Void
    ) async throws(LoopctlError) -> Int64 {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let count = try await records(in: topic, reader: reader)
            progress(count)
            if count >= target || clock.now >= deadline || Task.isCancelled { return count }
            try? await Task.sleep(for: min(interval, deadline - clock.now))
        }
    }
}

// MARK: - Text

extension ReplaySummary {
    /// The summary for a terminal.
    public var text: String {
        var lines: [String] = []
        func breakdown(_ counts: [String: Int]) -> String {
            counts.isEmpty ? "" : " (" + counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
                .map { "\($0.key) \(Format.count($0.value))" }.joined(separator: ", ") + ")"
        }
        lines.append("events        \(Format.count(events))\(breakdown(eventsByType))")
        lines.append("predictions   \(Format.count(predictions)) by route\(breakdown(predictionsByRoute)); by model\(breakdown(predictionsByModel))")
        lines.append("labels        \(Format.count(labels))\(breakdown(labelsBySource))")
        lines.append("dead letters  \(Format.count(deadLetters))\(breakdown(deadLettersByReason))")
        if !undecodable.isEmpty { lines.append("undecodable   \(breakdown(undecodable).dropFirst())") }
        lines.append("")
        lines.append("served quality (prequential: each prediction scored before its label was known)")
        var rows = [["POLICY", "LABELED", "ROC AUC", "ACCURACY"]]
        rows.append(Self.row("served (all deciding roles)", served))
        for (name, quality) in servedByModel.sorted(by: { ReplaySummary.modelLabelsAscending($0.key, $1.key) }) { rows.append(Self.row("  " + name, quality)) }
        rows.append(Self.row("baseline policy (role baseline)", baselinePolicy))
        rows.append(Self.row("constant baseline (always \(constantBaselineDecision ? "positive" : "negative"))", constantBaseline))
        lines.append(Format.table(rows))
        lines.append("")
        if models.isEmpty {
            lines.append("model versions: none")
        } else {
            lines.append("model versions")
            var table = [["VERSION", "TRIGGER", "HOLDOUT AUC", "CHAMPION AUC", "OUTCOME", "REASONS"]]
            for model in models {
                table.append([
                    "v\(model.version)", model.trigger, Format.number(model.holdoutAUC), Format.number(model.championHoldoutAUC),
                    model.outcome, model.reasons.joined(separator: "; "),
                ])
            }
            lines.append(Format.table(table))
            if !promotions.isEmpty {
                lines.append("champions from: " + promotions.map { "v\($0.version) at \(Format.time(ms: $0.eventTimeMs))" }
                    .joined(separator: ", "))
            }
        }
        lines.append("")
        if alerts.isEmpty {
            lines.append("alerts raised: none")
        } else {
            lines.append("alerts raised: \(alerts.count)")
            var table = [["EVENT TIME", "KIND", "FEATURE", "VALUE", "THRESHOLD", "ID"]]
            for alert in alerts {
                table.append([
                    Format.time(ms: alert.eventTimeMs), alert.kind, alert.feature ?? "-", Format.number(alert.value),
                    Format.number(alert.threshold), alert.alertId,
                ])
            }
            lines.append(Format.table(table))
        }
        return lines.joined(separator: "\n")
    }

    static func row(_ name: String, _ quality: Quality) -> [String] {
        [name, Format.count(quality.count), Format.number(quality.auc), Format.percent(quality.accuracy, 1)]
    }
}

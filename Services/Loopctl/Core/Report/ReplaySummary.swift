import Foundation
import Contracts
import Kafka
import Learning

/// The end-of-replay summary: what went through the loop's topics, how the served predictions did
/// (prequentially: each was scored before its label was known) against the baseline policy, which
/// model versions were trained and promoted or rejected, and which drift alerts were raised.
public struct ReplaySummary: Sendable {
    // MARK: - Input

    /// What the summary reads, decoded from the topics.
    public struct Input: Sendable {
        /// `loop.events` record counts by `ce_type` header (`(none)` when missing).
        public var eventsByType: [String: Int] = [:]
        public var predictions: [Prediction] = []
        public var labeled: [LabeledExample] = []
        public var deadLetters: [DeadLetter] = []
        /// Every `loop.models` version record in offset order (a version appears once per status change).
        public var versionRecords: [ModelVersionRecord] = []
        /// Every registry state in offset order.
        public var registryStates: [RegistryState] = []
        public var monitoring: [MonitoringRecord] = []
        /// Records that did not decode as their topic's contract, by topic.
        public var undecodable: [String: Int] = [:]
        /// The decision threshold (loop.yaml `decision.threshold`).
        public var threshold = 0.5
        /// The baseline policy's constant score (loop.yaml `decision.baselineScore`); `nil`: the majority class.
        public var baselineScore: Double?
        /// The PSI alert threshold (loop.yaml `drift.psi`), drawn on the drift chart.
        public var psiThreshold: Double?
        /// Labeled examples per point of the rolling quality series; `nil` picks one from the count.
        public var window: Int?

        public init() {}

        /// The policy numbers of `config`.
        public mutating func apply(_ config: LoopConfig) {
            threshold = config.decision.threshold
            baselineScore = config.decision.baselineScore
            psiThreshold = config.drift.psi
        }
    }

    // MARK: - Parts

    /// ROC AUC and accuracy of a set of labeled decisions.
    public struct Quality: Sendable, Hashable {
        public var count: Int
        public var positives: Int
        /// `nil` without both classes.
        public var auc: Double?
        /// Share of decisions equal to the label (`nil` when empty).
        public var accuracy: Double?
    }

    /// One model version as the registry last recorded it.
    public struct ModelVersion: Sendable, Hashable {
        public var version: Int64
        public var parent: Int64?
        public var trigger: String
        /// The latest status on `loop.models`.
        public var status: ModelStatus
        /// `promoted` (it ever was champion or canary), `rejected`, or the latest status.
        public var outcome: String
        /// The candidate's holdout ROC AUC from the lineage, if recorded.
        public var holdoutAUC: Double?
        /// The champion's ROC AUC on the same holdout, if recorded.
        public var championHoldoutAUC: Double?
        public var reasons: [String]
        public var createdAtMs: Int64
    }

    /// A version starting to decide requests as champion, at the event time of its first served prediction.
    public struct Promotion: Sendable, Hashable {
        public var version: Int64
        public var eventTimeMs: Int64
        public init(version: Int64, eventTimeMs: Int64) {
            self.version = version
            self.eventTimeMs = eventTimeMs
        }
    }

    /// One drift alert raised (its first `open` record).
    public struct Alert: Sendable, Hashable {
        public var alertId: String
        public var kind: String
        public var feature: String?
        public var value: Double?
        public var threshold: Double?
        public var eventTimeMs: Int64
        public var modelVersion: Int64?
    }

    /// One point of a time series.
    public struct Point: Sendable, Hashable {
        public var eventTimeMs: Int64
        public var value: Double
    }

    /// Rolling served quality: each point covers the `window` labeled examples ending at its event time.
    public struct QualityPoint: Sendable, Hashable {
        public var eventTimeMs: Int64
        public var auc: Double?
        public var accuracy: Double
    }

    // MARK: - Figures

    public var eventsByType: [String: Int]
    public var events: Int { eventsByType.values.reduce(0, +) }
    public var predictions: Int
    public var predictionsByRoute: [String: Int]
    /// Predictions by the role and version that decided: `baseline`, `champion v3`, `canary v4`.
    public var predictionsByModel: [String: Int]
    public var labels: Int
    public var labelsBySource: [String: Int]
    public var deadLetters: Int
    public var deadLettersByReason: [String: Int]
    public var models: [ModelVersion]
    /// Every labeled prediction that decided (all roles but shadow).
    public var served: Quality
    /// Served quality by the role and version that decided, like ``predictionsByModel``.
    public var servedByModel: [String: Quality]
    /// The labeled predictions the baseline policy decided (role `baseline`), if any.
    public var baselinePolicy: Quality
    /// Always deciding the baseline's constant answer on every served example: AUC 0.5.
    public var constantBaseline: Quality
    /// The constant baseline's decision.
    public var constantBaselineDecision: Bool
    public var alerts: [Alert]
    public var promotions: [Promotion]
    public var window: Int
    public var qualitySeries: [QualityPoint]
    /// PSI per feature over event time, from monitoring snapshots' `psi.<feature>` metrics.
    public var psiByFeature: [String: [Point]]
    public var psiThreshold: Double?
    public var threshold: Double
    public var undecodable: [String: Int]

    // MARK: - Computing

    /// Computes every figure of the summary from `input`.
    public init(_ input: Input) {
        eventsByType = input.eventsByType
        predictions = input.predictions.count
        predictionsByRoute = Self.counts(input.predictions.map(\.route.rawValue))
        predictionsByModel = Self.counts(input.predictions.map { Self.modelLabel(role: $0.role, version: $0.modelVersion) })
        labels = input.labeled.count
        labelsBySource = Self.counts(input.labeled.map(\.labelSource.rawValue))
        deadLetters = input.deadLetters.count
        deadLettersByReason = Self.counts(input.deadLetters.map(\.reason))
        threshold = input.threshold
        psiThreshold = input.psiThreshold
        undecodable = input.undecodable

        let served = ReadinessChecklist.served(input.labeled)
        self.served = Self.quality(served)
        var byModel: [String: [LabeledExample]] = [:]
        for example in served { byModel[Self.modelLabel(role: example.role, version: example.modelVersion), default: []].append(example) }
        servedByModel = byModel.mapValues(Self.quality)
        baselinePolicy = Self.quality(served.filter { $0.role == .baseline })
        let labels = served.map(\.label)
        constantBaselineDecision = ReadinessChecklist.baselineDecision(
            labels: labels, baselineScore: input.baselineScore, threshold: input.threshold)
        let constantScore = constantBaselineDecision ? 1.0 : 0.0
        let constantScores = [Double](repeating: constantScore, count: labels.count)
        constantBaseline = Quality(
            count: labels.count, positives: labels.count { $0 }, auc: Metrics.rocAUC(scores: constantScores, labels: labels),
            accuracy: labels.isEmpty ? nil : Metrics.accuracy(scores: constantScores, labels: labels, threshold: 0.5))

        window = input.window ?? Self.defaultWindow(served.count)
        qualitySeries = Self.rolling(served, window: window)
        models = Self.versions(input.versionRecords, states: input.registryStates)
        promotions = Self.promotions(input.registryStates, versions: input.versionRecords, predictions: input.predictions)
        alerts = Self.alertsRaised(input.monitoring)
        psiByFeature = Self.psi(input.monitoring)
    }

    /// Orders ``modelLabel(role:version:)`` labels by role, then by version number (v9 before v10).
    public static func modelLabelsAscending(_ lhs: String, _ rhs: String) -> Bool {
        lhs.compare(rhs, options: .numeric) == .orderedAscending
    }

    /// `baseline`, `champion v3`, …
    public static func modelLabel(role: ModelRole, version: Int64?) -> String {
        version.map { "\(role.rawValue) v\($0)" } ?? role.rawValue
    }

    /// Quality of `examples` (AUC of the scores, accuracy of the decisions served).
    public static func quality(_ examples: some Collection<LabeledExample>) -> Quality {
        let labels = examples.map(\.label)
        return Quality(
            count: examples.count, positives: labels.count { $0 },
            auc: Metrics.rocAUC(scores: examples.map(\.score), labels: labels),
            accuracy: examples.isEmpty ? nil : Double(examples.count { $0.decision == $0.label }) / Double(examples.count))
    }

    /// About 60 points over the replay, at least 20 and at most 1,000 examples per window.
    static func defaultWindow(_ count: Int) -> Int { min(1000, max(20, count / 20)) }

    /// Quality over sliding windows of `window` examples (the whole set when shorter), about 200 points.
    static func rolling(_ served: [LabeledExample], window: Int) -> [QualityPoint] {
        guard !served.isEmpty else { return [] }
        let size = min(max(1, window), served.count)
        let step = max(1, (served.count - size) / 200)
        var points: [QualityPoint] = []
        var end = size
        while true {
            let slice = served[(end - size)..<end]
            let quality = quality(slice)
            points.append(QualityPoint(eventTimeMs: slice.last!.eventTimeMs, auc: quality.auc, accuracy: quality.accuracy ?? 0))
            if end == served.count { break }
            end = min(served.count, end + step)
        }
        return points
    }

    static func counts(_ values: [String]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for value in values { counts[value, default: 0] += 1 }
        return counts
    }

    // MARK: - Models

    static func versions(_ records: [ModelVersionRecord], states: [RegistryState]) -> [ModelVersion] {
        var latest: [Int64: ModelVersionRecord] = [:]
        var deciding: Set<Int64> = []
        for record in records {
            latest[record.version] = record
            if record.status == .champion || record.status == .canary { deciding.insert(record.version) }
        }
        for state in states {
            if let champion = state.champion { deciding.insert(champion) }
            if let canary = state.canary { deciding.insert(canary) }
        }
        return latest.values.sorted { $0.version < $1.version }.map { record in
            let outcome = deciding.contains(record.version) ? "promoted"
                : record.status == .rejected ? "rejected" : record.status.rawValue
            return ModelVersion(
                version: record.version, parent: record.parent, trigger: record.trigger, status: record.status, outcome: outcome,
                holdoutAUC: holdoutAUC(record.lineage, of: "candidate"), championHoldoutAUC: holdoutAUC(record.lineage, of: "champion"),
                reasons: record.reasons, createdAtMs: record.createdAtMs)
        }
    }

    /// The holdout ROC AUC of `model` (`candidate` or `champion`) in a lineage, looked up leniently:
    /// `holdout.<model>.auc` (any key case, `auc`/`rocAUC`/`roc_auc`), then `holdout.<model>AUC`,
    /// then (for the candidate) `holdout.auc`, `holdoutAUC` or `metrics.holdout.auc`.
    public static func holdoutAUC(_ lineage: JSONValue, of model: String) -> Double? {
        let aucNames: Set<String> = ["auc", "rocauc", "roc_auc", "roc-auc"]
        func member(_ value: JSONValue?, _ names: Set<String>) -> JSONValue? {
            guard let object = value?.objectValue else { return nil }
            return object.members.first { names.contains($0.key.lowercased()) }?.value
        }
        func auc(in value: JSONValue?) -> Double? { member(value, aucNames)?.doubleValue }
        let holdout = member(lineage, ["holdout", "holdoutmetrics", "holdout_metrics"])
            ?? member(member(lineage, ["metrics"]), ["holdout"])
        if let value = auc(in: member(holdout, [model])) { return value }
        if let value = member(holdout, Set(aucNames.map { model + $0 }))?.doubleValue { return value }
        guard model == "candidate" else { return nil }
        if let value = auc(in: holdout) { return value }
        return member(lineage, ["holdoutauc", "holdout_auc"])?.doubleValue
    }

    /// Each version that became champion (in registry order), placed at the event time of the
    /// first prediction it decided; versions that never decided a prediction get no marker.
    static func promotions(
        _ states: [RegistryState], versions: [ModelVersionRecord], predictions: [Prediction]
    ) -> [Promotion] {
        var order: [Int64] = []
        for state in states { if let champion = state.champion, !order.contains(champion) { order.append(champion) } }
        for record in versions where record.status == .champion && !order.contains(record.version) { order.append(record.version) }
        var firstDecided: [Int64: Int64] = [:]
        for prediction in predictions where prediction.role == .champion {
            guard let version = prediction.modelVersion else { continue }
            firstDecided[version] = min(firstDecided[version] ?? prediction.eventTimeMs, prediction.eventTimeMs)
        }
        return order.compactMap { version in firstDecided[version].map { Promotion(version: version, eventTimeMs: $0) } }
            .sorted { ($0.eventTimeMs, $0.version) < ($1.eventTimeMs, $1.version) }
    }

    // MARK: - Monitoring

    /// Alerts raised: the first `open` record of each alert id, in event-time order.
    static func alertsRaised(_ records: [MonitoringRecord]) -> [Alert] {
        var seen: Set<String> = []
        var alerts: [Alert] = []
        for record in records where record.kind == .alert && record.alertState == .open {
            guard let id = record.alertId, seen.insert(id).inserted else { continue }
            alerts.append(Alert(
                alertId: id, kind: record.alertKind?.rawValue ?? "unknown", feature: record.feature, value: record.value,
                threshold: record.threshold, eventTimeMs: record.eventTimeMs, modelVersion: record.modelVersion))
        }
        return alerts.sorted { ($0.eventTimeMs, $0.alertId) < ($1.eventTimeMs, $1.alertId) }
    }

    /// `psi.<feature>` snapshot metrics by feature, in event-time order (the last value per time).
    static func psi(_ records: [MonitoringRecord]) -> [String: [Point]] {
        var byFeature: [String: [Int64: Double]] = [:]
        for record in records where record.kind == .snapshot {
            guard let metrics = record.metrics.objectValue else { continue }
            for member in metrics.members where member.key.hasPrefix("psi.") {
                guard let value = member.value.doubleValue, value.isFinite else { continue }
                byFeature[String(member.key.dropFirst(4)), default: [:]][record.eventTimeMs] = value
            }
        }
        return byFeature.mapValues { points in
            points.sorted { $0.key < $1.key }.map { Point(eventTimeMs: $0.key, value: $0.value) }
        }
    }
}

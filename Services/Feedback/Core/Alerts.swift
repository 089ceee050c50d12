import Contracts
import Learning

/// One condition an alert watches, as evaluated at a snapshot.
public struct AlertCondition: Sendable, Equatable {
    public var kind: MonitoringRecord.AlertKind
    public var version: Int64?
    public var feature: String?
    public var value: Double
    public var threshold: Double
    /// Whether the condition holds now.
    public var firing: Bool

    public init(kind: MonitoringRecord.AlertKind, version: Int64?, feature: String?, value: Double, threshold: Double, firing: Bool) {
        self.kind = kind
        self.version = version
        self.feature = feature
        self.value = value
        self.threshold = threshold
        self.firing = firing
    }

    /// The stable id of the condition: one alert per kind, version and feature.
    public var id: String { "\(kind.rawValue):\(version.map(String.init) ?? "baseline"):\(feature ?? "-")" }

    /// The drift and performance conditions of one version's report. Windows with fewer than
    /// ``MonitorSettings/minimumSamples`` events give no condition (their alerts keep their state).
    static func evaluate(_ report: VersionReport, settings: MonitorSettings) -> [AlertCondition] {
        let thresholds = settings.drift
        var conditions: [AlertCondition] = []
        for drift in report.drift where drift.count >= settings.minimumSamples {
            if let p = drift.chiSquaredPValue {
                conditions.append(AlertCondition(
                    kind: .drift, version: report.version, feature: drift.feature, value: p,
                    threshold: thresholds.chiSquaredPValue, firing: p < thresholds.chiSquaredPValue || drift.psi > thresholds.psi))
            } else {
                let ks = drift.ks ?? 0
                conditions.append(AlertCondition(
                    kind: .drift, version: report.version, feature: drift.feature, value: drift.psi,
                    threshold: thresholds.psi, firing: drift.psi > thresholds.psi || ks > thresholds.ks))
            }
        }
        if let score = report.scoreDrift, score.count >= settings.minimumSamples {
            conditions.append(AlertCondition(
                kind: .drift, version: report.version, feature: "score", value: score.psi,
                threshold: thresholds.scorePSI, firing: score.psi > thresholds.scorePSI))
        }
        if let reference = report.referenceAUC {
            let floor = reference - thresholds.performanceDrop
            if report.countWindow.count >= settings.minimumSamples, let auc = report.countWindow.auc {
                conditions.append(AlertCondition(
                    kind: .performanceDrop, version: report.version, feature: nil, value: auc, threshold: floor,
                    firing: auc < floor))
            }
            if let chunk = report.chunks.last(where: { $0.predictions >= settings.minimumSamples }),
               let estimated = chunk.estimatedAUC {
                conditions.append(AlertCondition(
                    kind: .estimatedPerformanceDrop, version: report.version, feature: nil, value: estimated,
                    threshold: floor, firing: estimated < floor))
            }
        }
        return conditions
    }
}

/// Open alerts, de-duplicated by condition id: a condition that starts to hold opens one alert,
/// which stays open (however often the condition is evaluated) until the condition stops holding.
public struct AlertBook: Sendable {
    /// The open alerts by id.
    public private(set) var open: [String: MonitoringRecord] = [:]

    public init(open: [MonitoringRecord] = []) {
        for alert in open { if let id = alert.alertId { self.open[id] = alert } }
    }

    /// Applies the conditions evaluated at `eventTimeMs`; returns the alerts that opened or
    /// resolved. Conditions not evaluated this time leave their alert as it is.
    public mutating func evaluate(_ conditions: [AlertCondition], eventTimeMs: Int64) -> [MonitoringRecord] {
        var changes: [MonitoringRecord] = []
        for condition in conditions {
            let id = condition.id
            let isOpen = open[id] != nil
            guard condition.firing != isOpen else { continue }
            let record = MonitoringRecord(
                kind: .alert, modelVersion: condition.version, eventTimeMs: eventTimeMs, alertKind: condition.kind,
                alertState: condition.firing ? .open : .resolved, alertId: id, feature: condition.feature,
                value: condition.value, threshold: condition.threshold)
            open[id] = condition.firing ? record : nil
            changes.append(record)
        }
        return changes
    }
}

import Contracts
import Prometheus
import Learning
import Synchronization

/// The service's Prometheus figures: join counters, and per version the quality, drift, estimate
/// and alert figures of the latest snapshot (the same numbers `loop.monitoring` carries).
final class FeedbackMetrics: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let joinCounters: [Counter]
    private let published = Mutex(JoinCounters())

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        joinCounters = JoinCounters.fields.map { field in
            registry.makeCounter(
                descriptor: MetricNameDescriptor(
                    namespace: "loop", subsystem: "feedback", metricName: "join", unitName: "total",
                    helpText: "What the join did with its inputs, by result (restored across restarts)."),
                labels: [("result", field.name)])
        }
    }

    /// Brings the join counters to `counters` (they only grow).
    func update(counters: JoinCounters) {
        published.withLock { last in
            for (index, field) in JoinCounters.fields.enumerated() {
                let delta = counters[keyPath: field.path] - last[keyPath: field.path]
                if delta > 0 { joinCounters[index].increment(by: Int64(delta)) }
            }
            last = counters
        }
    }

    private func gauge(_ name: String, _ help: String, _ labels: [(String, String)]) -> Gauge {
        registry.makeGauge(
            descriptor: MetricNameDescriptor(namespace: "loop", subsystem: "feedback", metricName: name, unitName: "", helpText: help),
            labels: labels)
    }

    /// Sets the gauges of a snapshot.
    func update(snapshot: MonitorSnapshot) {
        for report in snapshot.versions {
            let version = report.version.map(String.init) ?? "baseline"
            for (window, quality) in [("count", report.countWindow), ("time", report.timeWindow)] {
                let figures: [(String, Double?)] = [
                    ("auc", quality.auc), ("log_loss", quality.logLoss), ("brier", quality.brier),
                    ("accuracy", quality.accuracy), ("ece", quality.expectedCalibrationError),
                    ("positive_rate", quality.positiveRate), ("mean_cost", quality.meanCost), ("count", Double(quality.count)),
                ]
                for (metric, value) in figures {
                    guard let value else { continue }
                    gauge("quality", "Live quality of labeled predictions per model version and window.",
                          [("version", version), ("window", window), ("metric", metric)]).set(value)
                }
            }
            for drift in report.drift + (report.scoreDrift.map { [$0] } ?? []) {
                var statistics: [(String, Double)] = [("psi", drift.psi)]
                if let ks = drift.ks { statistics.append(("ks", ks)) }
                if let p = drift.chiSquaredPValue { statistics.append(("chi2_p", p)) }
                for (statistic, value) in statistics {
                    gauge("drift", "Drift of a feature or the score against the version's training baseline.",
                          [("version", version), ("feature", drift.feature), ("statistic", statistic)]).set(value)
                }
            }
            if let chunk = report.chunks.last {
                var estimates: [(String, Double?)] = [
                    ("auc", chunk.estimatedAUC), ("accuracy", chunk.estimatedAccuracy), ("labeled_share", chunk.labeledShare),
                ]
                if let judged = report.chunks.last(where: { $0.aucError != nil }) {
                    estimates.append(("auc_error", judged.aucError))
                    estimates.append(("accuracy_error", judged.accuracyError))
                }
                for (metric, value) in estimates {
                    guard let value else { continue }
                    gauge("estimate", "Label-free (CBPE) performance estimate of the latest chunk, and its error once labeled.",
                          [("version", version), ("metric", metric)]).set(value)
                }
            }
        }
        for kind in ["drift", "performance_drop", "estimated_performance_drop", "label_starvation"] {
            let open = snapshot.openAlerts.filter { $0.alertKind?.rawValue == kind }.count
            gauge("alerts_open", "Open alerts by kind.", [("kind", kind)]).set(Double(open))
        }
    }

    /// Sets the review figures.
    func update(reviewQueue: Int, agreement: Double?) {
        gauge("review_queue", "Pending predictions routed to human review.", []).set(Double(reviewQueue))
        if let agreement {
            gauge("reviewer_agreement", "Share of review verdicts that later ground truth agreed with.", []).set(agreement)
        }
    }
}

import Contracts
import Foundation
import Kafka
import Logging

/// Feeds records of `loop.labeled` into the training store and runs the stream triggers.
///
/// A batch is stored in order; when a record fires a trigger (N new labels, or a new period of
/// event time) the batch is cut right after it and the run is awaited before the rest is stored.
/// Consumption therefore waits for training, and a replay fires the same triggers at the same
/// records with the same data whatever its speed or batch sizes.
public struct LabeledIngestor: Sendable {
    public let store: TrainingStore
    public let coordinator: RetrainingCoordinator
    public let triggers: StreamTriggers
    public let topic: String
    private let logger: Logger

    /// An ingestor of `topic` into `store`, firing `triggers` into `coordinator`.
    public init(store: TrainingStore, coordinator: RetrainingCoordinator, triggers: StreamTriggers, topic: String, logger: Logger) {
        self.store = store
        self.coordinator = coordinator
        self.triggers = triggers
        self.topic = topic
        self.logger = logger
    }

    /// Decodes and stores `records` (in order), awaiting every run they trigger. Returns the totals.
    @discardableResult
    public func process(_ records: [ConsumedRecord]) async throws(RetrainerError) -> IngestResult {
        let incoming = records.map { record in
            let example: LabeledExample?
            do {
                example = try LabeledExample(bytes: record.value ?? [])
            } catch {
                logger.warning("unreadable labeled example skipped", metadata: [
                    "kafka.partition": "\(record.partition)", "kafka.offset": "\(record.offset)", "error.message": "\(error)",
                ])
                example = nil
            }
            return IncomingLabel(example: example, partition: record.partition, offset: record.offset)
        }
        var total = IngestResult(consumed: 0, inserted: 0, duplicates: 0, unreadable: 0, fired: [])
        var start = incoming.startIndex
        while start < incoming.endIndex {
            let result = try store.ingest(
                incoming[start...], topic: topic, triggers: triggers, nowMs: Int64(Date().timeIntervalSince1970 * 1000))
            start += result.consumed
            total.consumed += result.consumed
            total.inserted += result.inserted
            total.duplicates += result.duplicates
            total.unreadable += result.unreadable
            total.fired += result.fired
            for trigger in result.fired {
                _ = await coordinator.requestAndWait(trigger)
            }
        }
        return total
    }
}

/// Turns open alerts of `loop.monitoring` into triggers, once per alert id.
public struct AlertListener: Sendable {
    public let store: TrainingStore
    public let coordinator: RetrainingCoordinator
    /// `retraining.onDriftAlert`: when `false`, alerts are ignored.
    public let enabled: Bool
    private let logger: Logger

    public init(store: TrainingStore, coordinator: RetrainingCoordinator, enabled: Bool, logger: Logger) {
        self.store = store
        self.coordinator = coordinator
        self.enabled = enabled
        self.logger = logger
    }

    /// Handles `records`; returns the triggers requested.
    @discardableResult
    public func process(_ records: [ConsumedRecord]) async throws(RetrainerError) -> [Trigger] {
        guard enabled else { return [] }
        var requested: [Trigger] = []
        for record in records {
            guard let alert = try? MonitoringRecord(bytes: record.value ?? []), alert.kind == .alert,
                  alert.alertState == .open, let alertKind = alert.alertKind
            else { continue }
            let kind: Trigger.Kind
            switch alertKind {
            case .drift: kind = .driftAlert
            case .performanceDrop, .estimatedPerformanceDrop: kind = .performanceAlert
            case .labelStarvation: continue
            }
            let alertId = alert.alertId ?? "\(alertKind.rawValue):\(alert.feature ?? "-"):\(alert.eventTimeMs)"
            var reason = "\(alertKind.rawValue) alert \(alertId) opened"
            if let feature = alert.feature { reason += " on \(feature)" }
            if let value = alert.value, let threshold = alert.threshold {
                reason += ": \(format(value)) crossed \(format(threshold))"
            }
            if let version = alert.modelVersion { reason += " (model version \(version))" }
            let trigger = Trigger(
                id: "alert:\(alertId)", kind: kind, reason: reason, requestedAtMs: Int64(Date().timeIntervalSince1970 * 1000))
            guard try store.recordAlert(id: alertId, eventTimeMs: alert.eventTimeMs, trigger: trigger) else { continue }
            try await coordinator.request(trigger)
            requested.append(trigger)
        }
        return requested
    }
}

import Prometheus
import ServiceKit

/// The feature-store's metrics on the service's registry.
struct FeatureStoreMetrics: Sendable {
    let eventsApplied: Counter
    let eventsLate: Counter
    let eventsInvalid: Counter
    let eventsIgnored: Counter
    let entities: Gauge
    let stateBytes: Gauge
    let writeBatchSize: ValueHistogram
    let publishLatency: DurationHistogram
    let eventTimeLag: Gauge
    let restoredRecords: Counter
    let historySnapshots: Counter
    let applyDuration: DurationHistogram
    let writeCPU: Counter
    let inFlightBatches: Gauge

    init(registry: PrometheusCollectorRegistry) {
        eventsApplied = registry.makeCounter(descriptor: .named(
            "feature_store_events_applied_total", help: "Events applied to entity feature state."))
        eventsLate = registry.makeCounter(descriptor: .named(
            "feature_store_events_late_total",
            help: "Events further behind their entity's latest event time than the allowed lateness; counted, not applied."))
        eventsInvalid = registry.makeCounter(descriptor: .named(
            "feature_store_events_invalid_total", help: "Records of loop.events that are not usable events; counted, not applied."))
        eventsIgnored = registry.makeCounter(descriptor: .named(
            "feature_store_events_ignored_total", help: "Events of types no feature reads."))
        entities = registry.makeGauge(descriptor: .named("feature_store_entities", help: "Entities held by this instance's partitions."))
        stateBytes = registry.makeGauge(descriptor: .named(
            "feature_store_state_bytes", help: "Bytes of the SQLite state (with history and WAL) of this instance's partitions."))
        writeBatchSize = registry.makeValueHistogram(
            descriptor: .named("feature_store_write_batch_entities", help: "Entity states written (and published) per partition batch."),
            buckets: [1, 10, 100, 500, 1000, 5000, 10_000, 50_000])
        publishLatency = registry.makeDurationHistogram(
            descriptor: .named(
                "feature_store_publish_lag_seconds",
                help: "From a batch reaching the feature-store to its changes being acknowledged by loop.features."),
            buckets: [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                      .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5)])
        eventTimeLag = registry.makeGauge(descriptor: .named(
            "feature_store_event_time_lag_seconds", help: "Wall clock minus the newest event time published, at the last batch."))
        restoredRecords = registry.makeCounter(descriptor: .named(
            "feature_store_restored_records_total", help: "loop.features records read to restore partitions."))
        historySnapshots = registry.makeCounter(descriptor: .named(
            "feature_store_history_snapshots_total",
            help: "Point-in-time snapshots written (at most one per entity per history interval)."))
        applyDuration = registry.makeDurationHistogram(
            descriptor: .named(
                "feature_store_apply_seconds",
                help: "Decoding, applying and storing one input batch (one SQLite transaction per partition), from queueing it on the write lanes."),
            buckets: [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1)])
        writeCPU = registry.makeCounter(descriptor: .named(
            "feature_store_write_cpu_seconds_total",
            help: "Thread CPU time spent decoding, applying and committing partition batches (all write lanes)."))
        inFlightBatches = registry.makeGauge(descriptor: .named(
            "feature_store_inflight_batches", help: "Stored batches whose publication to loop.features is not yet acknowledged."))
    }
}

import Contracts
import Prometheus

/// The ingest service's metrics: outcomes by type and reason, batch sizes, latency, queue depth
/// and consumer lag. Counters are created once for every label value, so counting never allocates.
public struct IngestMetrics: Sendable {
    let accepted: [EventKind: Counter]
    let duplicate: [EventKind: Counter]
    let rejected: [RejectReason: Counter]
    /// Events per written batch.
    let batchEvents: ValueHistogram
    /// Events per HTTP request.
    let requestEvents: ValueHistogram
    /// From the oldest input of a batch arriving (raw record timestamp, HTTP request) to its acknowledgement.
    let latency: DurationHistogram
    /// Events submitted to the writer and not yet answered.
    let queueDepth: Gauge
    /// Records in the producer's local queue (not yet sent or not yet acknowledged).
    let producerQueue: Gauge
    /// Raw records not yet consumed by the group.
    let consumerLag: Gauge

    public init(registry: PrometheusCollectorRegistry) {
        func events(_ outcome: String, _ help: String, _ labels: [(String, String)]) -> Counter {
            registry.makeCounter(
                descriptor: MetricNameDescriptor(namespace: "loop", subsystem: "ingest", metricName: "events_\(outcome)", unitName: "total", helpText: help),
                labels: labels)
        }
        var accepted: [EventKind: Counter] = [:]
        var duplicate: [EventKind: Counter] = [:]
        for kind in EventKind.allCases {
            accepted[kind] = events("accepted", "Events written to loop.events, by type.", [("type", kind.currentType.description)])
            duplicate[kind] = events("duplicate", "Events whose (source, id) was already seen, by type.", [("type", kind.currentType.description)])
        }
        var rejected: [RejectReason: Counter] = [:]
        for reason in RejectReason.allCases {
            rejected[reason] = events("rejected", "Inputs written to loop.events.dlq, by reason.", [("reason", reason.rawValue)])
        }
        self.accepted = accepted
        self.duplicate = duplicate
        self.rejected = rejected
        let sizes: [Double] = [1, 10, 50, 100, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000]
        batchEvents = registry.makeValueHistogram(
            descriptor: MetricNameDescriptor(namespace: "loop", subsystem: "ingest", metricName: "batch", unitName: "events", helpText: "Events per written batch."),
            buckets: sizes)
        requestEvents = registry.makeValueHistogram(
            descriptor: MetricNameDescriptor(namespace: "loop", subsystem: "ingest", metricName: "request", unitName: "events", helpText: "Events per HTTP request."),
            buckets: sizes)
        latency = registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(
                namespace: "loop", subsystem: "ingest", metricName: "latency", unitName: "seconds",
                helpText: "From a batch's oldest input arriving to its outputs being acknowledged."),
            buckets: [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5), .seconds(30)])
        queueDepth = registry.makeGauge(
            descriptor: MetricNameDescriptor(namespace: "loop", subsystem: "ingest", metricName: "queue_depth", unitName: "events", helpText: "Events submitted to the writer and not yet acknowledged and persisted."))
        producerQueue = registry.makeGauge(
            descriptor: MetricNameDescriptor(
                namespace: "loop", subsystem: "ingest", metricName: "producer_queue", unitName: "records",
                helpText: "Records in the producer's local queue: not yet sent or not yet acknowledged by the broker."))
        consumerLag = registry.makeGauge(
            descriptor: MetricNameDescriptor(namespace: "loop", subsystem: "ingest", metricName: "consumer_lag", unitName: "records", helpText: "Raw records the consumer group has not processed."))
    }
}

import Contracts
import Prometheus
import ServiceKit
import Synchronization

/// The scorer's Prometheus metrics. Counters with labels are created once per label set and
/// cached; the hot path records a batch's aggregates, not one update per message where it can.
public final class ScorerMetrics: Sendable {
    private let registry: PrometheusCollectorRegistry
    /// Score requests read (after the `ce_type` filter).
    let requests: Counter
    /// Records of `loop.events` skipped as another event type.
    let otherEvents: Counter
    /// Score requests that could not be read (no requestId, entity or time).
    let invalidRequests: Counter
    /// Score requests whose requestId was answered before.
    let duplicates: Counter
    let scores: ValueHistogram
    let featureAge: ValueHistogram
    let batchSize: ValueHistogram
    let endToEnd: DurationHistogram
    let batchLatency: DurationHistogram
    let featureWaitTimeouts: Counter
    let modelRevision: Gauge
    let featureRecords: Counter
    let badFeatureRecords: Counter
    private let predictionCounters = Mutex<[String: Counter]>([:])
    private let reasonCounters = Mutex<[String: Counter]>([:])

    /// Registers the scorer's metrics in `registry`.
    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        requests = registry.makeCounter(descriptor: .named("scorer_requests_total", help: "Score requests read from loop.events."))
        otherEvents = registry.makeCounter(descriptor: .named(
            "scorer_other_events_total", help: "loop.events records of other types, skipped by ce_type."))
        invalidRequests = registry.makeCounter(descriptor: .named(
            "scorer_invalid_requests_total", help: "Score requests without a usable requestId, entity or time."))
        duplicates = registry.makeCounter(descriptor: .named(
            "scorer_duplicate_requests_total", help: "Score requests whose requestId was already answered."))
        scores = registry.makeValueHistogram(
            descriptor: .named("scorer_score", help: "Scores of the deciding model."),
            buckets: stride(from: 0.1, through: 1.0, by: 0.1).map { $0 })
        featureAge = registry.makeValueHistogram(
            descriptor: .named("scorer_feature_age_seconds", help: "Request time minus the entity's latest feature update."),
            buckets: [1, 10, 60, 300, 900, 3600, 7200, 21600, 86400])
        batchSize = registry.makeValueHistogram(
            descriptor: .named("scorer_batch_size", help: "Score requests per batch."),
            buckets: [1, 10, 100, 500, 1000, 2000, 5000, 10000])
        endToEnd = registry.makeDurationHistogram(
            descriptor: .named("scorer_end_to_end_latency_seconds", help: "Request produce time to prediction acknowledged."),
            buckets: [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                      .milliseconds(50), .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(5)])
        batchLatency = registry.makeDurationHistogram(
            descriptor: .named(
                "scorer_batch_latency_seconds",
                help: "Batch taken from the consumer to its predictions acknowledged (decode, feature wait, score, produce)."),
            buckets: [.microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                      .milliseconds(25), .milliseconds(100), .seconds(1), .seconds(5)])
        featureWaitTimeouts = registry.makeCounter(descriptor: .named(
            "scorer_feature_wait_timeouts_total",
            help: "Score requests whose features had not reached the request time when the bounded feature wait ended."))
        modelRevision = registry.makeGauge(descriptor: .named("scorer_registry_revision", help: "Registry revision serving now."))
        featureRecords = registry.makeCounter(descriptor: .named("scorer_feature_records_total", help: "loop.features records applied."))
        badFeatureRecords = registry.makeCounter(descriptor: .named(
            "scorer_bad_feature_records_total", help: "loop.features records that could not be decoded."))
    }

    /// Counts `count` predictions of one route, role and model version.
    func predictions(route: Route, role: ModelRole, version: Int64?, count: Int) {
        let versionText = version.map(String.init) ?? "baseline"
        let key = "\(route.rawValue)|\(role.rawValue)|\(versionText)"
        let counter = predictionCounters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = registry.makeCounter(
                descriptor: .named("scorer_predictions_total", help: "Predictions produced, by route, deciding role and model version."),
                labels: [("route", route.rawValue), ("role", role.rawValue), ("model_version", versionText)])
            counters[key] = counter
            return counter
        }
        counter.increment(by: Int64(count))
    }

    /// Counts `count` predictions routed or decided by fallback for `reason`.
    func routed(reason: String, count: Int) {
        let counter = reasonCounters.withLock { counters in
            if let counter = counters[reason] { return counter }
            let counter = registry.makeCounter(
                descriptor: .named(
                    "scorer_guarded_predictions_total",
                    help: "Predictions carrying a reason code (missing, stale or out-of-range inputs, review band)."),
                labels: [("reason", reason)])
            counters[reason] = counter
            return counter
        }
        counter.increment(by: Int64(count))
    }
}

/// Running counts, for tests, benchmarks and logs.
public final class ScorerStatistics: Sendable {
    let requestsRead = Atomic<Int>(0)
    let predictionsProduced = Atomic<Int>(0)
    let duplicatesSkipped = Atomic<Int>(0)
    let invalidSkipped = Atomic<Int>(0)
    let featureWaitTimeouts = Atomic<Int>(0)
    /// Time spent per stage, summed over batches.
    public let stages = StageTimes()

    init() {}

    /// Requests scored although their features had not reached the request time within the wait.
    public var featureWaitTimedOut: Int { featureWaitTimeouts.load(ordering: .relaxed) }

    /// Score requests read.
    public var requests: Int { requestsRead.load(ordering: .relaxed) }
    /// Predictions acknowledged by the broker.
    public var predictions: Int { predictionsProduced.load(ordering: .relaxed) }
    /// Requests skipped as already answered.
    public var duplicates: Int { duplicatesSkipped.load(ordering: .relaxed) }
    /// Requests skipped as unreadable.
    public var invalid: Int { invalidSkipped.load(ordering: .relaxed) }
}

/// Time spent in each stage of the data path, summed over batches (nanoseconds), for the benchmark's
/// breakdown and logs.
public final class StageTimes: Sendable {
    let batches = Atomic<Int>(0)
    let decodeNanoseconds = Atomic<Int>(0)
    let featureWaitNanoseconds = Atomic<Int>(0)
    let scoreNanoseconds = Atomic<Int>(0)
    let enqueueNanoseconds = Atomic<Int>(0)
    let acknowledgements = Atomic<Int>(0)
    let acknowledgementNanoseconds = Atomic<Int>(0)

    init() {}

    func add(decode: Duration, featureWait: Duration, score: Duration) {
        batches.add(1, ordering: .relaxed)
        decodeNanoseconds.add(Self.nanoseconds(decode), ordering: .relaxed)
        featureWaitNanoseconds.add(Self.nanoseconds(featureWait), ordering: .relaxed)
        scoreNanoseconds.add(Self.nanoseconds(score), ordering: .relaxed)
    }

    func add(enqueue: Duration) {
        enqueueNanoseconds.add(Self.nanoseconds(enqueue), ordering: .relaxed)
    }

    func add(acknowledgement: Duration) {
        acknowledgements.add(1, ordering: .relaxed)
        acknowledgementNanoseconds.add(Self.nanoseconds(acknowledgement), ordering: .relaxed)
    }

    /// The totals so far.
    public var snapshot: Snapshot {
        Snapshot(
            batches: batches.load(ordering: .relaxed),
            decode: .nanoseconds(decodeNanoseconds.load(ordering: .relaxed)),
            featureWait: .nanoseconds(featureWaitNanoseconds.load(ordering: .relaxed)),
            score: .nanoseconds(scoreNanoseconds.load(ordering: .relaxed)),
            enqueue: .nanoseconds(enqueueNanoseconds.load(ordering: .relaxed)),
            acknowledgedBatches: acknowledgements.load(ordering: .relaxed),
            acknowledgement: .nanoseconds(acknowledgementNanoseconds.load(ordering: .relaxed)))
    }

    /// Totals per stage.
    public struct Snapshot: Sendable {
        /// Batches prepared.
        public var batches: Int
        /// Filtering by `ce_type` and decoding requests.
        public var decode: Duration
        /// The bounded wait for features to reach the requests' event time.
        public var featureWait: Duration
        /// Deduplication, feature evaluation, scoring, explanation and encoding.
        public var score: Duration
        /// Handing the predictions to the producer's local queue (in batch order, one batch at a time).
        public var enqueue: Duration
        /// Batches whose predictions were sent.
        public var acknowledgedBatches: Int
        /// Send to acknowledgement.
        public var acknowledgement: Duration
    }

    static func nanoseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
    }
}

import Contracts
import Foundation
import Kafka
import ServiceKit

/// How the scorer runs, beyond `loop.yaml`: consumer group, batching and the idempotency horizon.
/// Validated once by ``validate()``.
public struct ScorerOptions: Sendable {
    /// The consumer group of every scorer instance.
    public var groupID: String = "feedbackloop-scorer"
    /// The most score requests taken (and predictions produced) per batch.
    public var maxBatch: Int = 2_000
    /// How long the consumer waits to fill a batch (librdkafka waits this long unless
    /// ``maxBatch`` records arrive first, so at low rates it is added to every request's latency).
    public var maxBatchWait: Duration = .milliseconds(1)
    /// How many batches of predictions may await acknowledgement while the next ones are scored.
    /// Offsets are still marked in order, each once every earlier batch is acknowledged.
    public var maxInFlight: Int = 4
    /// `fetch.wait.max.ms` of the request consumer and the `loop.features` / `loop.models` readers
    /// (unless ``KafkaConfig/extra`` sets it): how long the broker may hold a fetch that finds no
    /// data. Brokers answer as soon as data arrives; this bounds the wait when one does not.
    public var fetchWait: Duration = .milliseconds(5)
    /// How many requestIds per partition are remembered for deduplication (the idempotency
    /// horizon, by count). Restored on assignment from the partition's `loop.predictions`.
    public var dedupeCapacity: Int = 1_000_000
    /// How long a batch may wait for the features of its requests to reach the requests' event time
    /// (when score requests feed features, the feature-store's record of the request itself marks
    /// that); past it the request is scored with what there is, and stale features are routed.
    public var featureWait: Duration = .seconds(2)
    /// How many slices of a batch are decoded and scored at the same time (on as many threads, at
    /// most): a busy scorer uses that many cores besides Kafka's own threads.
    public var lanes: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// The fewest requests a lane takes: smaller batches are scored in fewer lanes.
    public var minimumLaneSize: Int = 64
    /// Consumer-group settings of the request consumer.
    public var consumer: ConsumerSettings = ConsumerSettings()
    /// Producer settings of the prediction producer.
    public var producer: ProducerSettings = {
        var settings = ProducerSettings()
        settings.linger = .milliseconds(1)
        return settings
    }()

    /// Options with the defaults.
    public init() {}

    /// Throws a ``ScorerError`` naming the first invalid option.
    public func validate() throws(ScorerError) {
        guard !groupID.isEmpty else { throw ScorerError(.invalidOptions, "the consumer group id is empty") }
        guard maxBatch >= 1 else { throw ScorerError(.invalidOptions, "maxBatch must be at least 1") }
        guard maxBatchWait >= .zero else { throw ScorerError(.invalidOptions, "maxBatchWait must not be negative") }
        guard maxInFlight >= 1 else { throw ScorerError(.invalidOptions, "maxInFlight must be at least 1") }
        guard fetchWait >= .milliseconds(1) else { throw ScorerError(.invalidOptions, "fetchWait must be at least 1 ms") }
        guard lanes >= 1 else { throw ScorerError(.invalidOptions, "lanes must be at least 1") }
        guard minimumLaneSize >= 1 else { throw ScorerError(.invalidOptions, "minimumLaneSize must be at least 1") }
        guard dedupeCapacity >= 1 else { throw ScorerError(.invalidOptions, "dedupeCapacity must be at least 1") }
        guard featureWait >= .zero else { throw ScorerError(.invalidOptions, "featureWait must not be negative") }
    }

    // MARK: - Settings

    /// `LOOP_GROUP` / `--group`; empty means `<topic prefix>.scorer`.
    public static let group = Setting.string(
        "group", default: "", valueName: "<group>",
        help: "Consumer group of the scorer instances on loop.events; empty means `<topic prefix>.scorer`.")
    /// `LOOP_SCORER_BATCH` / `--scorer-batch`.
    public static let batch = Setting.integer(
        "scorer-batch", default: 2_000, range: 1...100_000,
        help: "Most score requests scored and produced per batch.")
    /// `LOOP_SCORER_BATCH_WAIT_MS` / `--scorer-batch-wait-ms`.
    public static let batchWait = Setting.integer(
        "scorer-batch-wait-ms", default: 1, range: 0...10_000, valueName: "<ms>",
        help: "How long the consumer waits to fill a batch unless it fills first, in milliseconds (added to latency at low rates).")
    /// `LOOP_SCORER_IN_FLIGHT` / `--scorer-in-flight`.
    public static let inFlight = Setting.integer(
        "scorer-in-flight", default: 4, range: 1...64,
        help: "Batches of predictions awaiting acknowledgement while the next ones are scored.")
    /// `LOOP_SCORER_FETCH_WAIT_MS` / `--scorer-fetch-wait-ms`.
    public static let fetchWaitSetting = Setting.integer(
        "scorer-fetch-wait-ms", default: 5, range: 1...10_000, valueName: "<ms>",
        help: "fetch.wait.max.ms of the scorer's consumers and readers (unless LOOP_KAFKA_* extras set it), in milliseconds.")
    /// `LOOP_SCORER_DEDUPE_CAPACITY` / `--scorer-dedupe-capacity`.
    public static let dedupe = Setting.integer(
        "scorer-dedupe-capacity", default: 1_000_000, range: 1...100_000_000,
        help: "RequestIds remembered per partition for idempotency (restored from loop.predictions on assignment).")

    /// `LOOP_SCORER_LANES` / `--scorer-lanes`.
    public static let lanesSetting = Setting.integer(
        "scorer-lanes", default: 0, range: 0...64,
        help: "Slices of a batch decoded and scored at the same time; 0 means one per core.")

    /// `LOOP_SCORER_FEATURE_WAIT_MS` / `--scorer-feature-wait-ms`.
    public static let featureWait = Setting.integer(
        "scorer-feature-wait-ms", default: 2_000, range: 0...60_000, valueName: "<ms>",
        help: "Longest a batch waits for its entities' features to reach the requests' event time, in milliseconds.")

    /// The scorer's own settings.
    public static let declarations: [any SettingDeclaration] = [group, batch, batchWait, inFlight, fetchWaitSetting, dedupe, featureWait, lanesSetting]

    /// Options from parsed settings.
    public init(settings: Settings, topicPrefix: String) {
        groupID = settings[Self.group].isEmpty ? "\(topicPrefix).scorer" : settings[Self.group]
        maxBatch = settings[Self.batch]
        maxBatchWait = .milliseconds(settings[Self.batchWait])
        maxInFlight = settings[Self.inFlight]
        fetchWait = .milliseconds(settings[Self.fetchWaitSetting])
        dedupeCapacity = settings[Self.dedupe]
        featureWait = .milliseconds(settings[Self.featureWait])
        if settings[Self.lanesSetting] > 0 { lanes = settings[Self.lanesSetting] }
    }
}

/// The one error type of the scorer: a code, a human reason and whether a retry can help.
public struct ScorerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable {
        /// ``ScorerOptions`` out of range.
        case invalidOptions = "invalid_options"
        /// `loop.yaml` names a model feature that no feature definition provides.
        case invalidConfiguration = "invalid_configuration"
        /// A score request without a usable requestId, entity or time.
        case invalidRequest = "invalid_request"
        /// A model version cannot be served (unreadable artifact, inputs the request vector lacks).
        case unservableModel = "unservable_model"
        /// Kafka failed (producing predictions, committing offsets).
        case kafka = "kafka"
    }

    public var code: Code
    /// A sentence a person can act on.
    public var reason: String
    public var isRetryable: Bool

    /// An error with `code` and `reason`.
    public init(_ code: Code, _ reason: String, isRetryable: Bool = false) {
        self.code = code
        self.reason = reason
        self.isRetryable = isRetryable
    }

    public var description: String { "\(code.rawValue): \(reason)" }
}

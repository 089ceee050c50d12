/// The whole domain of one FeedbackLoop deployment, read from `loop.yaml`.
///
/// Every service loads the same file through ``LoopConfig/load(path:)`` and refuses to start when it
/// is invalid. The domain is configuration, not code: fields, features, the label, the decision
/// policy, costs, monitoring and retraining all live here.
public struct LoopConfig: Sendable, Equatable {
    /// A short name for the deployment, used in logs, reports and model cards.
    public var name: String
    public var topics: TopicSettings
    public var events: EventPolicy
    /// The fields events may carry, by name.
    public var fields: [String: FieldSpec]
    public var label: LabelSpec
    public var features: FeatureSettings
    public var model: ModelSettings
    public var decision: DecisionPolicy
    public var costs: CostMatrix
    public var feedback: FeedbackSettings
    public var drift: DriftThresholds
    public var retraining: RetrainingPolicy

    public init(
        name: String, topics: TopicSettings, events: EventPolicy, fields: [String: FieldSpec],
        label: LabelSpec, features: FeatureSettings, model: ModelSettings, decision: DecisionPolicy,
        costs: CostMatrix, feedback: FeedbackSettings, drift: DriftThresholds, retraining: RetrainingPolicy
    ) {
        self.name = name
        self.topics = topics
        self.events = events
        self.fields = fields
        self.label = label
        self.features = features
        self.model = model
        self.decision = decision
        self.costs = costs
        self.feedback = feedback
        self.drift = drift
        self.retraining = retraining
    }
}

/// A span of time written in `loop.yaml` as `30s`, `30m`, `1h`, `24h`, `7d` or `2w`.
public struct TimeSpan: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var seconds: Double
    public init(seconds: Double) { self.seconds = seconds }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.seconds < rhs.seconds }
    public var description: String { TimeSpanFormat.format(self) }
}

// MARK: - Topics and events

/// Topic names and their shape. Every topic is keyed by entity and has the same partition count,
/// so the topics are co-partitioned.
public struct TopicSettings: Sendable, Equatable {
    /// Topics are named `<prefix>.events.raw`, `<prefix>.events`, … (default `loop`).
    public var prefix: String
    public var partitions: Int
    public var replicationFactor: Int
    /// Retention of the non-compacted topics.
    public var retention: TimeSpan

    public init(prefix: String, partitions: Int, replicationFactor: Int, retention: TimeSpan) {
        self.prefix = prefix
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.retention = retention
    }
}

/// What ingest does with input that is not exactly as declared.
public struct EventPolicy: Sendable, Equatable {
    public enum MissingTime: String, Sendable, CaseIterable { case reject, stamp }
    public enum UnknownFields: String, Sendable, CaseIterable { case reject, drop, keep }
    public var missingTime: MissingTime
    public var unknownFields: UnknownFields
    public var maxPayloadBytes: Int
    public var dedupeHorizon: TimeSpan

    public init(missingTime: MissingTime, unknownFields: UnknownFields, maxPayloadBytes: Int, dedupeHorizon: TimeSpan) {
        self.missingTime = missingTime
        self.unknownFields = unknownFields
        self.maxPayloadBytes = maxPayloadBytes
        self.dedupeHorizon = dedupeHorizon
    }
}

/// One field an event's data may carry.
public struct FieldSpec: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case double, int, bool, string, category }
    public enum PII: String, Sendable, CaseIterable { case none, drop, hash }
    public var kind: Kind
    public var required: Bool
    /// Inclusive bounds for numeric fields.
    public var min: Double?
    public var max: Double?
    /// Allowed values for `category` (and optionally `string`) fields.
    public var values: [String]?
    public var pii: PII

    public init(kind: Kind, required: Bool, min: Double? = nil, max: Double? = nil, values: [String]? = nil, pii: PII) {
        self.kind = kind
        self.required = required
        self.min = min
        self.max = max
        self.values = values
        self.pii = pii
    }
}

/// Which outcome field holds the label and which value of it is the positive class.
public struct LabelSpec: Sendable, Equatable {
    public var field: String
    public var positive: String
    /// The outcome field holding the business value of the outcome, if any.
    public var valueField: String?

    public init(field: String, positive: String, valueField: String? = nil) {
        self.field = field
        self.positive = positive
        self.valueField = valueField
    }
}

// MARK: - Features

/// Per-entity features: aggregations of a source field over event-time windows.
public struct FeatureSettings: Sendable, Equatable {
    /// Events later than this behind the entity's latest event time are counted as late and not applied.
    public var allowedLateness: TimeSpan
    /// How long point-in-time history is kept for `?asOf=` reads.
    public var historyRetention: TimeSpan
    /// The event types that feed features when a definition does not say (default: observations and score requests).
    public var eventTypes: [String]
    public var definitions: [FeatureDefinition]

    public init(allowedLateness: TimeSpan, historyRetention: TimeSpan, eventTypes: [String], definitions: [FeatureDefinition]) {
        self.allowedLateness = allowedLateness
        self.historyRetention = historyRetention
        self.eventTypes = eventTypes
        self.definitions = definitions
    }
}

public struct FeatureDefinition: Sendable, Equatable {
    public enum Aggregation: String, Sendable, CaseIterable {
        case count, sum, mean, min, max, last, stddev
        case timeSinceLast = "time_since_last"
        case decayedMean = "decayed_mean"
    }
    /// The feature's name as models and APIs see it, e.g. `nswprice_mean_24h`.
    public var name: String
    /// The event field aggregated (unused for `count` and `time_since_last`).
    public var field: String?
    public var aggregation: Aggregation
    /// The event-time window (`decayed_mean` uses ``halfLife`` instead; `last` and
    /// `time_since_last` need neither).
    public var window: TimeSpan?
    public var halfLife: TimeSpan?
    /// The event types that feed this feature (`loop.observation.v1`, `loop.score_request.v1`).
    public var eventTypes: [String]

    public init(name: String, field: String? = nil, aggregation: Aggregation, window: TimeSpan? = nil, halfLife: TimeSpan? = nil, eventTypes: [String]) {
        self.name = name
        self.field = field
        self.aggregation = aggregation
        self.window = window
        self.halfLife = halfLife
        self.eventTypes = eventTypes
    }
}

// MARK: - Model, decision, costs

public struct ModelSettings: Sendable, Equatable {
    /// Features (by name) the model uses.
    public var features: [String]
    /// Fields of the score request's own context the model uses directly.
    public var contextFields: [String]

    public init(features: [String], contextFields: [String]) {
        self.features = features
        self.contextFields = contextFields
    }
}

/// How a score becomes a decision and when a human must look.
public struct DecisionPolicy: Sendable, Equatable {
    public enum Fallback: String, Sendable, CaseIterable { case review, positive, negative }
    /// Scores at or above the threshold are decided positive.
    public var threshold: Double
    /// Scores inside `[lower, upper]` are routed to human review.
    public var reviewBand: ClosedRange<Double>?
    /// The score the baseline policy answers with before any model exists.
    public var baselineScore: Double
    /// Features older than this (request time minus as-of time) are stale.
    public var maxFeatureAge: TimeSpan
    /// Inputs further than this many training standard deviations from the mean are out of range.
    public var maxZScore: Double
    /// What happens to a request with missing, stale or out-of-range inputs.
    public var fallback: Fallback
    /// The number of feature contributions an explanation lists.
    public var explainTopK: Int

    public init(threshold: Double, reviewBand: ClosedRange<Double>? = nil, baselineScore: Double, maxFeatureAge: TimeSpan, maxZScore: Double, fallback: Fallback, explainTopK: Int) {
        self.threshold = threshold
        self.reviewBand = reviewBand
        self.baselineScore = baselineScore
        self.maxFeatureAge = maxFeatureAge
        self.maxZScore = maxZScore
        self.fallback = fallback
        self.explainTopK = explainTopK
    }
}

/// Business cost of each cell of the confusion matrix (positive = decided positive).
public struct CostMatrix: Sendable, Equatable {
    public var truePositive: Double
    public var falsePositive: Double
    public var falseNegative: Double
    public var trueNegative: Double

    public init(truePositive: Double, falsePositive: Double, falseNegative: Double, trueNegative: Double) {
        self.truePositive = truePositive
        self.falsePositive = falsePositive
        self.falseNegative = falseNegative
        self.trueNegative = trueNegative
    }
}

// MARK: - Monitoring and retraining

public struct FeedbackSettings: Sendable, Equatable {
    /// How long (event time) a prediction waits for its outcome.
    public var joinDeadline: TimeSpan
    /// The label a prediction gets at the deadline; `nil` counts it as unlabeled instead.
    public var defaultLabel: String?
    /// Sliding quality windows: by count and by event time.
    public var windowCount: Int
    public var windowTime: TimeSpan
    /// How often snapshots go to `loop.monitoring`.
    public var snapshotInterval: TimeSpan

    public init(joinDeadline: TimeSpan, defaultLabel: String? = nil, windowCount: Int, windowTime: TimeSpan, snapshotInterval: TimeSpan) {
        self.joinDeadline = joinDeadline
        self.defaultLabel = defaultLabel
        self.windowCount = windowCount
        self.windowTime = windowTime
        self.snapshotInterval = snapshotInterval
    }
}

public struct DriftThresholds: Sendable, Equatable {
    public var psi: Double
    public var ks: Double
    public var chiSquaredPValue: Double
    public var scorePSI: Double
    /// A drop of the primary metric by more than this raises `performance_drop`.
    public var performanceDrop: Double
    /// No label for this long (event time) raises `label_starvation`.
    public var labelStarvation: TimeSpan

    public init(psi: Double, ks: Double, chiSquaredPValue: Double, scorePSI: Double, performanceDrop: Double, labelStarvation: TimeSpan) {
        self.psi = psi
        self.ks = ks
        self.chiSquaredPValue = chiSquaredPValue
        self.scorePSI = scorePSI
        self.performanceDrop = performanceDrop
        self.labelStarvation = labelStarvation
    }
}

public struct RetrainingPolicy: Sendable, Equatable {
    public enum Metric: String, Sendable, CaseIterable { case auc, logLoss = "log_loss", cost }
    public enum ClassWeight: String, Sendable, CaseIterable { case none, balanced }
    /// Retrain every N new labels (`nil`: off).
    public var everyLabels: Int?
    /// Retrain every T of event time (`nil`: off).
    public var everyEventTime: TimeSpan?
    /// Retrain every T of wall-clock time (`nil`: off).
    public var everyWallClock: TimeSpan?
    public var onDriftAlert: Bool
    /// The training set: the last N examples and/or the last T of event time.
    public var trainingExamples: Int?
    public var trainingEventTime: TimeSpan?
    /// The newest share of the training set held out for the gate.
    public var holdoutShare: Double
    public var l2: Double
    public var classWeight: ClassWeight
    public var gate: PromotionGate
    /// Share of requests a passing candidate decides as canary before it becomes champion (0: promote directly).
    public var canaryShare: Double

    public init(everyLabels: Int? = nil, everyEventTime: TimeSpan? = nil, everyWallClock: TimeSpan? = nil, onDriftAlert: Bool, trainingExamples: Int? = nil, trainingEventTime: TimeSpan? = nil, holdoutShare: Double, l2: Double, classWeight: ClassWeight, gate: PromotionGate, canaryShare: Double) {
        self.everyLabels = everyLabels
        self.everyEventTime = everyEventTime
        self.everyWallClock = everyWallClock
        self.onDriftAlert = onDriftAlert
        self.trainingExamples = trainingExamples
        self.trainingEventTime = trainingEventTime
        self.holdoutShare = holdoutShare
        self.l2 = l2
        self.classWeight = classWeight
        self.gate = gate
        self.canaryShare = canaryShare
    }
}

/// What a candidate must show on the holdout to be promoted.
public struct PromotionGate: Sendable, Equatable {
    public var metric: RetrainingPolicy.Metric
    public var minHoldout: Int
    public var minImprovement: Double
    public var maxCalibrationError: Double

    public init(metric: RetrainingPolicy.Metric, minHoldout: Int, minImprovement: Double, maxCalibrationError: Double) {
        self.metric = metric
        self.minHoldout = minHoldout
        self.minImprovement = minImprovement
        self.maxCalibrationError = maxCalibrationError
    }
}

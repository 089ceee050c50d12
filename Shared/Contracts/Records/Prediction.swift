/// How a decision was taken.
public enum Route: String, Sendable, Hashable, CaseIterable {
    /// Decided automatically.
    case auto
    /// Sent to human review (inside the review band, or inputs the model cannot be trusted on).
    case review
}

/// Which model produced a score and in what role.
public enum ModelRole: String, Sendable, Hashable, CaseIterable {
    /// The configured prior, answered before any model exists.
    case baseline
    case champion
    /// A challenger deciding a share of requests.
    case canary
    /// A challenger scored on every request, never acted on.
    case shadow
}

/// A named feature value exactly as a model saw it (`nil`: missing).
public struct FeatureValue: Sendable, Hashable {
    public var name: String
    public var value: Double?
    public init(name: String, value: Double?) {
        self.name = name
        self.value = value
    }
}

/// One feature's contribution to a score (exact for linear models: coefficient × standardized value).
public struct Contribution: Sendable, Hashable {
    public var feature: String
    public var contribution: Double
    public init(feature: String, contribution: Double) {
        self.feature = feature
        self.contribution = contribution
    }
}

/// A score from a model other than the one that decided.
public struct ChallengerScore: Sendable, Hashable {
    public var modelVersion: Int64
    public var role: ModelRole
    public var score: Double
    public init(modelVersion: Int64, role: ModelRole, score: Double) {
        self.modelVersion = modelVersion
        self.role = role
        self.score = score
    }
}

/// A record of `loop.predictions`, keyed by entity: what the scorer decided for one request, with
/// the exact feature vector it used, so training sees what serving saw.
public struct Prediction: TopicRecord, Hashable {
    public static let recordName = "prediction"
    public static let schemaVersion: SchemaVersion = 1

    public var requestId: String
    public var entity: String
    /// The request's event time, milliseconds since the epoch.
    public var eventTimeMs: Int64
    /// The version that decided (`nil` for the baseline policy).
    public var modelVersion: Int64?
    public var role: ModelRole
    public var score: Double
    /// `true` when decided positive (score at or above the threshold, or the fallback said so).
    public var decision: Bool
    public var route: Route
    /// Why the request was routed or decided by fallback (`out_of_range`, `missing_features`, `stale_features`, `review_band`).
    public var reasons: [String]
    public var features: [FeatureValue]
    public var explanation: [Contribution]
    public var challengers: [ChallengerScore]
    /// The event time the features were evaluated as of, milliseconds since the epoch (`nil`: no features).
    public var featuresAsOfMs: Int64?
    /// Request time minus the entity's latest feature update, in seconds.
    public var featureAgeSeconds: Double?
    /// Time from consuming the request to producing the prediction, in milliseconds.
    public var latencyMs: Double
    /// W3C trace context of the request.
    public var traceparent: String?

    public init(
        requestId: String, entity: String, eventTimeMs: Int64, modelVersion: Int64?, role: ModelRole, score: Double,
        decision: Bool, route: Route, reasons: [String] = [], features: [FeatureValue], explanation: [Contribution] = [],
        challengers: [ChallengerScore] = [], featuresAsOfMs: Int64? = nil, featureAgeSeconds: Double? = nil,
        latencyMs: Double = 0, traceparent: String? = nil
    ) {
        self.requestId = requestId
        self.entity = entity
        self.eventTimeMs = eventTimeMs
        self.modelVersion = modelVersion
        self.role = role
        self.score = score
        self.decision = decision
        self.route = route
        self.reasons = reasons
        self.features = features
        self.explanation = explanation
        self.challengers = challengers
        self.featuresAsOfMs = featuresAsOfMs
        self.featureAgeSeconds = featureAgeSeconds
        self.latencyMs = latencyMs
        self.traceparent = traceparent
    }

    public var json: JSONValue {
        .object([
            "schemaVersion": .int(Int64(Self.schemaVersion.number)),
            "requestId": .string(requestId),
            "entity": .string(entity),
            "eventTimeMs": .int(eventTimeMs),
            "modelVersion": JSONValue(modelVersion),
            "role": .string(role.rawValue),
            "score": JSONValue(score),
            "decision": .bool(decision),
            "route": .string(route.rawValue),
            "reasons": .array(reasons.map { .string($0) }),
            "features": .array(features.map { .object(["name": .string($0.name), "value": JSONValue($0.value)]) }),
            "explanation": .array(explanation.map {
                .object(["feature": .string($0.feature), "contribution": JSONValue($0.contribution)])
            }),
            "challengers": .array(challengers.map {
                .object(["modelVersion": .int($0.modelVersion), "role": .string($0.role.rawValue), "score": JSONValue($0.score)])
            }),
            "featuresAsOfMs": JSONValue(featuresAsOfMs),
            "featureAgeSeconds": JSONValue(featureAgeSeconds),
            "latencyMs": JSONValue(latencyMs),
            "traceparent": JSONValue(traceparent),
        ])
    }

    public init(reading r: RecordReader) throws(RecordError) {
        requestId = try r.string("requestId")
        entity = try r.string("entity")
        eventTimeMs = try r.int("eventTimeMs")
        modelVersion = try r.optionalInt("modelVersion")
        role = try r.choice("role", ModelRole.self)
        score = try r.double("score")
        decision = try r.bool("decision")
        route = try r.choice("route", Route.self)
        reasons = try r.strings("reasons")
        features = try r.objects("features") { f throws(RecordError) in
            FeatureValue(name: try f.string("name"), value: try f.optionalDouble("value"))
        }
        explanation = try r.objects("explanation") { c throws(RecordError) in
            Contribution(feature: try c.string("feature"), contribution: try c.double("contribution"))
        }
        challengers = try r.objects("challengers") { c throws(RecordError) in
            ChallengerScore(modelVersion: try c.int("modelVersion"), role: try c.choice("role", ModelRole.self), score: try c.double("score"))
        }
        featuresAsOfMs = try r.optionalInt("featuresAsOfMs")
        featureAgeSeconds = try r.optionalDouble("featureAgeSeconds")
        latencyMs = try r.optionalDouble("latencyMs") ?? 0
        traceparent = try r.optionalString("traceparent")
    }
}

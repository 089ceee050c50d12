/// Where a labeled example's label came from.
public enum LabelSource: String, Sendable, Hashable, CaseIterable {
    /// An outcome event from an existing system.
    case outcome
    /// A human reviewer's verdict.
    case review
    /// The configured default label, given at the join deadline.
    case `default`
}

/// A record of `loop.labeled`, keyed by entity: a prediction joined with its ground truth. The
/// feature vector is exactly the one served, so training sees what serving saw.
public struct LabeledExample: TopicRecord, Hashable {
    public static let recordName = "labeled example"
    public static let schemaVersion: SchemaVersion = 1

    public var requestId: String
    public var entity: String
    /// The prediction's event time, milliseconds since the epoch.
    public var eventTimeMs: Int64
    public var features: [FeatureValue]
    /// `true` for the positive class.
    public var label: Bool
    public var score: Double
    public var modelVersion: Int64?
    public var role: ModelRole
    public var decision: Bool
    public var route: Route
    public var challengers: [ChallengerScore]
    public var labelSource: LabelSource
    /// Outcome event time minus prediction event time, in seconds.
    public var labelDelaySeconds: Double
    /// The outcome's business value, if it carried one.
    public var value: Double?

    public init(
        prediction: Prediction, label: Bool, labelSource: LabelSource, labelDelaySeconds: Double, value: Double? = nil
    ) {
        requestId = prediction.requestId
        entity = prediction.entity
        eventTimeMs = prediction.eventTimeMs
        features = prediction.features
        self.label = label
        score = prediction.score
        modelVersion = prediction.modelVersion
        role = prediction.role
        decision = prediction.decision
        route = prediction.route
        challengers = prediction.challengers
        self.labelSource = labelSource
        self.labelDelaySeconds = labelDelaySeconds
        self.value = value
    }

    public var json: JSONValue {
        .object([
            "schemaVersion": .int(Int64(Self.schemaVersion.number)),
            "requestId": .string(requestId),
            "entity": .string(entity),
            "eventTimeMs": .int(eventTimeMs),
            "features": .array(features.map { .object(["name": .string($0.name), "value": JSONValue($0.value)]) }),
            "label": .bool(label),
            "score": JSONValue(score),
            "modelVersion": JSONValue(modelVersion),
            "role": .string(role.rawValue),
            "decision": .bool(decision),
            "route": .string(route.rawValue),
            "challengers": .array(challengers.map {
                .object(["modelVersion": .int($0.modelVersion), "role": .string($0.role.rawValue), "score": JSONValue($0.score)])
            }),
            "labelSource": .string(labelSource.rawValue),
            "labelDelaySeconds": JSONValue(labelDelaySeconds),
            "value": JSONValue(value),
        ])
    }

    public init(reading r: RecordReader) throws(RecordError) {
        requestId = try r.string("requestId")
        entity = try r.string("entity")
        eventTimeMs = try r.int("eventTimeMs")
        features = try r.objects("features") { f throws(RecordError) in
            FeatureValue(name: try f.string("name"), value: try f.optionalDouble("value"))
        }
        label = try r.bool("label")
        score = try r.double("score")
        modelVersion = try r.optionalInt("modelVersion")
        role = try r.choice("role", ModelRole.self)
        decision = try r.bool("decision")
        route = try r.choice("route", Route.self)
        challengers = try r.objects("challengers") { c throws(RecordError) in
            ChallengerScore(modelVersion: try c.int("modelVersion"), role: try c.choice("role", ModelRole.self), score: try c.double("score"))
        }
        labelSource = try r.choice("labelSource", LabelSource.self)
        labelDelaySeconds = try r.double("labelDelaySeconds")
        value = try r.optionalDouble("value")
    }
}

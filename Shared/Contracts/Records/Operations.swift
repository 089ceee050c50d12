// MARK: - Dead letters

/// A record of `loop.events.dlq`: input ingest rejected, with everything needed to see why and to
/// replay it. Nothing is dropped silently.
public struct DeadLetter: TopicRecord, Hashable {
    public static let recordName = "dead letter"
    public static let schemaVersion: SchemaVersion = 1

    /// A stable reason code (`malformed`, `missing_attribute`, `unknown_type`, `field_type`, `out_of_range`, `unknown_field`, `too_large`, …).
    public var reason: String
    /// The offending field path (`data.nswprice`, `time`, …), when one is to blame.
    public var field: String?
    public var message: String
    /// Where the input came from: `http` (with the peer) or `kafka` (with topic, partition and offset).
    public var origin: String
    public var peer: String?
    public var topic: String?
    public var partition: Int64?
    public var offset: Int64?
    /// The original bytes: UTF-8 text when they are valid UTF-8, otherwise base64 (see ``bodyEncoding``).
    public var body: String
    /// `utf8` or `base64`.
    public var bodyEncoding: String
    /// The original headers (name → value, values as UTF-8 text or base64 like the body).
    public var headers: [String: String]
    /// When ingest rejected it, milliseconds since the epoch.
    public var rejectedAtMs: Int64

    public init(
        reason: String, field: String?, message: String, origin: String, peer: String? = nil, topic: String? = nil,
        partition: Int64? = nil, offset: Int64? = nil, body: String, bodyEncoding: String, headers: [String: String],
        rejectedAtMs: Int64
    ) {
        self.reason = reason
        self.field = field
        self.message = message
        self.origin = origin
        self.peer = peer
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.body = body
        self.bodyEncoding = bodyEncoding
        self.headers = headers
        self.rejectedAtMs = rejectedAtMs
    }

    public var json: JSONValue {
        .object([
            "schemaVersion": .int(Int64(Self.schemaVersion.number)),
            "reason": .string(reason),
            "field": JSONValue(field),
            "message": .string(message),
            "origin": .string(origin),
            "peer": JSONValue(peer),
            "topic": JSONValue(topic),
            "partition": JSONValue(partition),
            "offset": JSONValue(offset),
            "body": .string(body),
            "bodyEncoding": .string(bodyEncoding),
            "headers": .object(JSONObject(headers.map { ($0.key, JSONValue.string($0.value)) })),
            "rejectedAtMs": .int(rejectedAtMs),
        ])
    }

    public init(reading r: RecordReader) throws(RecordError) {
        reason = try r.string("reason")
        field = try r.optionalString("field")
        message = try r.string("message")
        origin = try r.string("origin")
        peer = try r.optionalString("peer")
        topic = try r.optionalString("topic")
        partition = try r.optionalInt("partition")
        offset = try r.optionalInt("offset")
        body = try r.string("body")
        bodyEncoding = try r.string("bodyEncoding")
        var headers: [String: String] = [:]
        if r.optional("headers") != nil {
            let object = try r.object("headers")
            for member in object.object {
                guard let text = member.value.stringValue else {
                    throw object.fail(member.key, "expected a string header value")
                }
                headers[member.key] = text
            }
        }
        self.headers = headers
        rejectedAtMs = try r.int("rejectedAtMs")
    }
}

// MARK: - Audit

/// A record of `loop.audit`: who did what when (promotions, rollbacks, config loaded, review
/// verdicts, authentication failures).
public struct AuditEntry: TopicRecord, Hashable {
    public static let recordName = "audit entry"
    public static let schemaVersion: SchemaVersion = 1

    /// Milliseconds since the epoch (wall clock).
    public var timeMs: Int64
    /// The service that wrote the entry.
    public var service: String
    /// Who acted: an API key's name, `system`, or `anonymous`.
    public var actor: String
    /// What happened, e.g. `model.promoted`, `auth.failed`, `review.verdict`, `config.loaded`.
    public var action: String
    /// What it happened to, e.g. `model.7` or a requestId.
    public var target: String?
    public var reason: String?
    public var details: JSONValue

    public init(
        timeMs: Int64, service: String, actor: String, action: String, target: String? = nil, reason: String? = nil,
        details: JSONValue = .object([:])
    ) {
        self.timeMs = timeMs
        self.service = service
        self.actor = actor
        self.action = action
        self.target = target
        self.reason = reason
        self.details = details
    }

    public var json: JSONValue {
        .object([
            "schemaVersion": .int(Int64(Self.schemaVersion.number)),
            "timeMs": .int(timeMs),
            "service": .string(service),
            "actor": .string(actor),
            "action": .string(action),
            "target": JSONValue(target),
            "reason": JSONValue(reason),
            "details": details,
        ])
    }

    public init(reading r: RecordReader) throws(RecordError) {
        timeMs = try r.int("timeMs")
        service = try r.string("service")
        actor = try r.string("actor")
        action = try r.string("action")
        target = try r.optionalString("target")
        reason = try r.optionalString("reason")
        details = r.optional("details") ?? .object([:])
    }
}

// MARK: - Monitoring

/// A record of `loop.monitoring`, keyed by model version (or `alerts`): a quality and drift
/// snapshot, or an alert opening or resolving.
public struct MonitoringRecord: TopicRecord, Hashable {
    public static let recordName = "monitoring"
    public static let schemaVersion: SchemaVersion = 1

    public enum Kind: String, Sendable, Hashable, CaseIterable { case snapshot, alert }
    public enum AlertKind: String, Sendable, Hashable, CaseIterable {
        case drift
        case performanceDrop = "performance_drop"
        case estimatedPerformanceDrop = "estimated_performance_drop"
        case labelStarvation = "label_starvation"
    }
    public enum AlertState: String, Sendable, Hashable, CaseIterable { case open, resolved }

    public var kind: Kind
    /// The model version the figures are about (`nil`: the baseline policy).
    public var modelVersion: Int64?
    /// Event time the figures are as of, milliseconds since the epoch.
    public var eventTimeMs: Int64
    /// For alerts: what kind, open or resolved, a stable id (one condition raises one alert), the
    /// feature it concerns, the measured value and the threshold it crossed.
    public var alertKind: AlertKind?
    public var alertState: AlertState?
    public var alertId: String?
    public var feature: String?
    public var value: Double?
    public var threshold: Double?
    /// For snapshots: the quality, drift and estimate figures by name (`auc`, `logLoss`, `psi.nswprice`, …).
    public var metrics: JSONValue

    public init(
        kind: Kind, modelVersion: Int64?, eventTimeMs: Int64, alertKind: AlertKind? = nil, alertState: AlertState? = nil,
        alertId: String? = nil, feature: String? = nil, value: Double? = nil, threshold: Double? = nil,
        metrics: JSONValue = .object([:])
    ) {
        self.kind = kind
        self.modelVersion = modelVersion
        self.eventTimeMs = eventTimeMs
        self.alertKind = alertKind
        self.alertState = alertState
        self.alertId = alertId
        self.feature = feature
        self.value = value
        self.threshold = threshold
        self.metrics = metrics
    }

    public var json: JSONValue {
        .object([
            "schemaVersion": .int(Int64(Self.schemaVersion.number)),
            "kind": .string(kind.rawValue),
            "modelVersion": JSONValue(modelVersion),
            "eventTimeMs": .int(eventTimeMs),
            "alertKind": JSONValue(alertKind?.rawValue),
            "alertState": JSONValue(alertState?.rawValue),
            "alertId": JSONValue(alertId),
            "feature": JSONValue(feature),
            "value": JSONValue(value),
            "threshold": JSONValue(threshold),
            "metrics": metrics,
        ])
    }

    public init(reading r: RecordReader) throws(RecordError) {
        kind = try r.choice("kind", Kind.self)
        modelVersion = try r.optionalInt("modelVersion")
        eventTimeMs = try r.int("eventTimeMs")
        alertKind = r.optional("alertKind") == nil ? nil : try r.choice("alertKind", AlertKind.self)
        alertState = r.optional("alertState") == nil ? nil : try r.choice("alertState", AlertState.self)
        alertId = try r.optionalString("alertId")
        feature = try r.optionalString("feature")
        value = try r.optionalDouble("value")
        threshold = try r.optionalDouble("threshold")
        metrics = r.optional("metrics") ?? .object([:])
    }
}

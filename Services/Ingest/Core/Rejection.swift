import Contracts

/// Why ingest refused an event: a stable code for the dead-letter record, the HTTP answer and the
/// `loop_ingest_rejected_total{reason}` metric.
public enum RejectReason: String, Sendable, Hashable, CaseIterable {
    /// Not parseable: invalid JSON, not an object, a structured record without a value.
    case malformed
    /// A required CloudEvents attribute (`specversion`, `id`, `source`, `type`, `subject`, or
    /// `time` when the policy rejects a missing time) is absent.
    case missingAttribute = "missing_attribute"
    /// An attribute is present but wrong (empty, not a URI, not RFC 3339, bad header encoding, …).
    case invalidAttribute = "invalid_attribute"
    /// `specversion` is not `1.0`.
    case unsupportedSpecVersion = "unsupported_spec_version"
    /// The data is not a JSON object, or does not fit its content type.
    case invalidData = "invalid_data"
    /// A CloudEvents format this service does not read (e.g. `application/cloudevents+avro`).
    case unsupportedContentType = "unsupported_content_type"
    /// `type` is not a FeedbackLoop event type (`loop.<kind>.v<n>`).
    case unknownType = "unknown_type"
    /// A known kind in a schema version this build does not accept.
    case unsupportedVersion = "unsupported_version"
    /// A field `loop.yaml` (or the event kind) requires is absent or `null`.
    case missingField = "missing_field"
    /// A field has the wrong JSON type for its declared type.
    case fieldType = "field_type"
    /// A numeric field outside its declared bounds.
    case outOfRange = "out_of_range"
    /// A value outside a field's declared `values`.
    case invalidValue = "invalid_value"
    /// A field `loop.yaml` does not declare, with `unknownFields: reject`.
    case unknownField = "unknown_field"
    /// The event is larger than `events.maxPayloadBytes`.
    case tooLarge = "too_large"

    /// The reason for a CloudEvents decoding error.
    init(_ reason: CloudEventError.Reason) {
        switch reason {
        case .malformed: self = .malformed
        case .missingAttribute: self = .missingAttribute
        case .invalidAttribute: self = .invalidAttribute
        case .unsupportedSpecVersion: self = .unsupportedSpecVersion
        case .invalidData: self = .invalidData
        case .unsupportedContentType: self = .unsupportedContentType
        }
    }
}

/// One refused event: the reason, the offending field path (`time`, `data.nswprice`, `ce_source`)
/// and a human message. Never contains a PII field's value.
public struct Rejection: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: RejectReason
    public var field: String?
    public var message: String

    public init(_ reason: RejectReason, field: String?, _ message: String) {
        self.reason = reason
        self.field = field
        self.message = message
    }

    /// The rejection for a CloudEvents decoding error.
    init(_ error: CloudEventError) {
        self.init(RejectReason(error.reason), field: error.path, error.message)
    }

    public var description: String {
        field.map { "\(reason.rawValue) at \($0): \(message)" } ?? "\(reason.rawValue): \(message)"
    }
}

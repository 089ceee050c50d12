// MARK: - Schema versions

/// The version of a record's schema.
///
/// Every record a service writes carries its `schemaVersion`; readers accept the current and the
/// previous version, so writers and readers can be upgraded one at a time.
public struct SchemaVersion: Sendable, Hashable, Comparable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// The version number (1, 2, …).
    public var number: Int

    public init(_ number: Int) { self.number = number }
    public init(integerLiteral value: Int) { self.number = value }

    /// The version before this one (`nil` for version 1).
    public var previous: SchemaVersion? { number > 1 ? SchemaVersion(number - 1) : nil }

    /// Whether a reader whose current version is `self` accepts a record written with `version`:
    /// the current one or the one before it.
    public func accepts(_ version: SchemaVersion) -> Bool {
        version == self || version == previous
    }

    /// The JSON field every record carries its version in.
    public static let fieldName = "schemaVersion"

    /// Reads `schemaVersion` from a record and checks that a reader at `current` accepts it.
    public static func check(_ record: JSONValue, current: SchemaVersion) -> Result<SchemaVersion, SchemaVersionError> {
        guard let field = record[fieldName] else { return .failure(.missing) }
        guard let number = field.int64Value, number >= 1, number <= Int64(Int32.max) else { return .failure(.invalid(field)) }
        let version = SchemaVersion(Int(number))
        return current.accepts(version) ? .success(version) : .failure(.unsupported(version, current: current))
    }

    public static func < (lhs: SchemaVersion, rhs: SchemaVersion) -> Bool { lhs.number < rhs.number }
    public var description: String { "v\(number)" }
}

/// Why a record's `schemaVersion` is not accepted.
public enum SchemaVersionError: Error, Sendable, Hashable, CustomStringConvertible {
    case missing
    case invalid(JSONValue)
    case unsupported(SchemaVersion, current: SchemaVersion)

    public var description: String {
        switch self {
        case .missing: "the record has no schemaVersion"
        case .invalid(let value): "schemaVersion must be a positive integer, found \(value.canonicalString)"
        case .unsupported(let version, let current):
            "schemaVersion \(version.number) is not readable here (accepted: \(current.number)\(current.previous.map { " and \($0.number)" } ?? ""))"
        }
    }
}

// MARK: - Event types

/// The event types FeedbackLoop accepts, each with its current schema version.
public enum EventKind: String, Sendable, Hashable, CaseIterable {
    /// Fields about an entity (`subject`), at event time.
    case observation
    /// A request to score an entity now: `requestId` and context fields.
    case scoreRequest = "score_request"
    /// Ground truth: `requestId` (or the entity and time), `label`, optional business `value`.
    case outcome
    /// A human verdict on a prediction; becomes an outcome.
    case review

    /// The current schema version of this kind's data.
    public var currentVersion: SchemaVersion { 1 }

    /// The current CloudEvents `type`, e.g. `loop.observation.v1`.
    public var currentType: EventType { EventType(kind: self, version: currentVersion) }
}

/// A CloudEvents `type` of the form `loop.<kind>.v<version>`.
public struct EventType: Sendable, Hashable, CustomStringConvertible {
    /// The namespace every FeedbackLoop type starts with.
    public static let namespace = "loop"

    public var kind: EventKind
    public var version: SchemaVersion

    public init(kind: EventKind, version: SchemaVersion) {
        self.kind = kind
        self.version = version
    }

    /// Parses `loop.<kind>.v<N>`; `nil` for anything else.
    public init?(_ type: String) {
        let parts = type.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == EventType.namespace, let kind = EventKind(rawValue: String(parts[1])),
              parts[2].first == "v", let number = Int(parts[2].dropFirst()), number >= 1,
              String(number) == parts[2].dropFirst()
        else { return nil }
        self.init(kind: kind, version: SchemaVersion(number))
    }

    /// Whether readers of this kind accept this version (current or previous).
    public var isAccepted: Bool { kind.currentVersion.accepts(version) }

    /// The type string, e.g. `loop.score_request.v1`.
    public var description: String { "\(EventType.namespace).\(kind.rawValue).v\(version.number)" }

    /// `loop.observation.v1`
    public static let observation = EventKind.observation.currentType
    /// `loop.score_request.v1`
    public static let scoreRequest = EventKind.scoreRequest.currentType
    /// `loop.outcome.v1`
    public static let outcome = EventKind.outcome.currentType
    /// `loop.review.v1`
    public static let review = EventKind.review.currentType
}

// MARK: - Payload fields

/// The names of the fields FeedbackLoop's own event data uses (the domain's fields come from `loop.yaml`).
public enum PayloadField {
    /// Correlates a score request, its prediction and its outcome or review.
    public static let requestId = "requestId"
    /// An outcome's or review's label value.
    public static let label = "label"
    /// An outcome's optional business value.
    public static let value = "value"
    /// A review's reviewer.
    public static let reviewer = "reviewer"
    /// A review's free-text note.
    public static let note = "note"
}

/// Every failure of the features module: a code to match on, a human reason and whether trying
/// again can help (never, for these: each is a property of the input).
public struct FeatureError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is.
    public enum Code: String, Sendable {
        /// A feature definition cannot be compiled (missing field or window, bad window, …).
        case invalidDefinition = "invalid_definition"
        /// An event's time or a field value is not a finite number in range.
        case invalidEvent = "invalid_event"
        /// Evaluation was asked for a time before the state's latest event.
        case asOfBeforeLatestEvent = "as_of_before_latest_event"
        /// Encoded bytes end before the record does.
        case truncated
        /// Encoded bytes do not start with the feature-state magic.
        case badMagic = "bad_magic"
        /// Encoded bytes carry a schema version this build cannot read.
        case unsupportedSchemaVersion = "unsupported_schema_version"
        /// Encoded bytes were written for a different feature layout (the definitions changed).
        case layoutMismatch = "layout_mismatch"
        /// Encoded bytes are inconsistent (out-of-range offsets, impossible counts, trailing bytes).
        case corrupt
    }

    public var code: Code
    /// What went wrong, in words.
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    /// Whether retrying the same operation can succeed: never, the input itself is at fault.
    public var isRetryable: Bool { false }

    public var description: String { "\(code.rawValue): \(reason)" }
}

/// The one error type of the `Learning` module: a machine-readable code, a human reason and whether
/// trying again can help.
///
/// Bad input (an empty training set, a feature vector of the wrong length, an artifact of an unknown
/// kind) is reported with this error, never by crashing.
public struct LearningError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, stable across releases so callers can switch on it.
    public enum Code: String, Sendable, Equatable {
        /// Options or a configuration are out of their valid range.
        case invalidConfiguration = "invalid_configuration"
        /// The data given is not usable as is (wrong length, non-finite values, unknown column…).
        case invalidInput = "invalid_input"
        /// Training needs examples of both classes.
        case singleClass = "single_class"
        /// The artifact's `kind` is not one this build can read.
        case unknownModelKind = "unknown_model_kind"
        /// The artifact's `schemaVersion` is newer than this build understands.
        case unsupportedSchemaVersion = "unsupported_schema_version"
        /// The artifact could not be decoded or is internally inconsistent.
        case malformedArtifact = "malformed_artifact"
    }

    public var code: Code
    /// A sentence a person can act on.
    public var reason: String
    /// Whether repeating the same call can succeed (never for the errors this module raises today:
    /// they all describe the input).
    public var isRetryable: Bool

    /// An error with `code` and a human `reason`.
    public init(_ code: Code, _ reason: String, isRetryable: Bool = false) {
        self.code = code
        self.reason = reason
        self.isRetryable = isRetryable
    }

    public var description: String { "\(code.rawValue): \(reason)" }
}

/// The one error type of the feedback service: a stable code, a human reason and whether trying
/// again can help.
public struct FeedbackError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, stable across releases.
    public enum Code: String, Sendable, Equatable {
        /// A setting or `loop.yaml` value the service cannot work with.
        case invalidConfiguration = "invalid_configuration"
        /// The join store (SQLite) failed.
        case storage
        /// Labeled examples, monitoring records or review events could not be delivered.
        case delivery
        /// A review verdict names no pending prediction.
        case unknownPrediction = "unknown_prediction"
        /// A review verdict is malformed or the prediction is already labeled.
        case invalidVerdict = "invalid_verdict"
    }

    public var code: Code
    /// A sentence a person can act on.
    public var reason: String
    /// Whether repeating the same call can succeed.
    public var isRetryable: Bool

    /// An error with `code` and a human `reason`.
    public init(_ code: Code, _ reason: String, isRetryable: Bool = false) {
        self.code = code
        self.reason = reason
        self.isRetryable = isRetryable
    }

    public var description: String { "\(code.rawValue): \(reason)" }
}

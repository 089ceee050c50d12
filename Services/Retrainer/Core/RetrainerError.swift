import Learning
import Storage

/// The one error type of the retrainer: a stable code, a human reason and whether trying again can help.
public struct RetrainerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, stable so callers and HTTP clients can switch on it.
    public enum Code: String, Sendable, Equatable {
        /// The training store (SQLite) failed.
        case storage
        /// Training could not run on the selected examples (too few, one class, bad values).
        case training
        /// Writing to or reading from `loop.models` / `loop.audit` failed.
        case publishing
        /// A registry operation names a version that does not exist.
        case unknownVersion = "unknown_version"
        /// A registry operation is not possible in the current state (e.g. rollback without history).
        case invalidTransition = "invalid_transition"
        /// A record of `loop.models` could not be read.
        case malformedRecord = "malformed_record"
    }

    public var code: Code
    /// A sentence a person can act on.
    public var reason: String
    /// Whether repeating the operation later can succeed.
    public var isRetryable: Bool

    /// An error with `code`, a human `reason` and whether a retry can help.
    public init(_ code: Code, _ reason: String, isRetryable: Bool = false) {
        self.code = code
        self.reason = reason
        self.isRetryable = isRetryable
    }

    public var description: String { "\(code.rawValue): \(reason)" }

    static func storage(_ error: any Error) -> RetrainerError {
        RetrainerError(.storage, "the training store failed: \(error)",
                       isRetryable: (error as? StorageError)?.isRetryable ?? false)
    }

    static func training(_ error: LearningError) -> RetrainerError {
        RetrainerError(.training, error.reason)
    }
}

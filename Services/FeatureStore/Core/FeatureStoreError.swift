/// Every failure of the feature-store: a code to match on, a human reason and whether trying
/// again can help.
public struct FeatureStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is.
    public enum Code: String, Sendable {
        /// The options are out of range or the feature definitions do not compile.
        case invalidConfiguration = "invalid_configuration"
        /// The local SQLite state cannot be opened, read or written.
        case storage
        /// A record read back from the state or the changelog does not decode.
        case corruptState = "corrupt_state"
        /// Publishing to the changelog failed.
        case publish
        /// Rebuilding partitions from the changelog failed.
        case restore
    }

    /// What kind of failure this is.
    public var code: Code
    /// What went wrong, in words.
    public var reason: String
    /// Whether the same operation can succeed if tried again later.
    public var isRetryable: Bool

    /// Creates an error.
    public init(_ code: Code, _ reason: String, isRetryable: Bool = false) {
        self.code = code
        self.reason = reason
        self.isRetryable = isRetryable
    }

    public var description: String { "\(code.rawValue): \(reason)" }
}

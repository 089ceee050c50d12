/// The one error type of loopctl: a stable code, a human reason, and whether running the same
/// command again later can help (a broker or service that is down, as opposed to bad input).
public struct LoopctlError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is.
    public enum Code: String, Sendable, Hashable {
        /// The CSV file cannot be read or a row does not parse.
        case badCSV = "bad_csv"
        /// The replay mapping is invalid or names a column the CSV does not have.
        case badMapping = "bad_mapping"
        /// A command-line value or environment variable does not parse.
        case badArgument = "bad_argument"
        /// `loop.yaml` is missing or invalid.
        case badConfig = "bad_config"
        /// Kafka failed (connect, produce, read).
        case kafka
        /// An HTTP call failed to connect or answered with an error status.
        case http
        /// A topic record does not decode as its contract says.
        case badRecord = "bad_record"
        /// Something the command looked for does not exist.
        case notFound = "not_found"
    }

    public var code: Code
    /// What went wrong, for a person.
    public var reason: String
    /// Whether trying again later can succeed.
    public var isRetryable: Bool

    public init(_ code: Code, _ reason: String, isRetryable: Bool = false) {
        self.code = code
        self.reason = reason
        self.isRetryable = isRetryable
    }

    public var description: String { "\(code.rawValue): \(reason)" }
}

/// Why bytes or headers are not a valid CloudEvent. Decoding never crashes: every problem is one of these.
public struct CloudEventError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable reason code, suitable for a dead-letter record or a metric label.
    public enum Reason: String, Sendable, Hashable, CaseIterable {
        /// Not parseable at all: invalid JSON, not an object (or not an array for a batch), no body.
        case malformed
        /// A REQUIRED attribute (`specversion`, `id`, `source`, `type`) is absent or `null`.
        case missingAttribute = "missing_attribute"
        /// An attribute is present but wrong: bad name, wrong type, empty, not a URI, not RFC 3339, …
        case invalidAttribute = "invalid_attribute"
        /// `specversion` is not `1.0`.
        case unsupportedSpecVersion = "unsupported_spec_version"
        /// `data`/`data_base64` do not fit the content type, are both present, or are not decodable.
        case invalidData = "invalid_data"
        /// A CloudEvents media type this codec does not handle (e.g. `application/cloudevents+avro`).
        case unsupportedContentType = "unsupported_content_type"
    }

    /// The stable reason code.
    public var reason: Reason
    /// The offending attribute, member or header, e.g. `time`, `data_base64`, `ce-source`, `[3].id`.
    public var path: String?
    /// The index of the event within a batch, if it came from one.
    public var index: Int?
    /// A human explanation.
    public var message: String

    public init(_ reason: Reason, path: String?, _ message: String, index: Int? = nil) {
        self.reason = reason
        self.path = path
        self.message = message
        self.index = index
    }

    /// Bad input stays bad: retrying cannot help.
    public var isRetryable: Bool { false }

    public var description: String {
        if let path { return "\(reason.rawValue) at \(path): \(message)" }
        return "\(reason.rawValue): \(message)"
    }

    /// The same error located inside a batch at `index` (the path gets an `[index]` prefix).
    func inBatch(at index: Int) -> CloudEventError {
        var error = self
        error.index = index
        error.path = path.map { "[\(index)].\($0)" } ?? "[\(index)]"
        return error
    }
}

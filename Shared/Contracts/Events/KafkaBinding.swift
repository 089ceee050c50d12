/// The CloudEvents Kafka protocol binding: binary mode (`ce_` headers, the value is the data) and
/// structured mode (`content-type: application/cloudevents+json`, the value is the JSON event).
/// Kafka has no batch mode.
public enum KafkaBinding {
    /// One Kafka record header. Values are bytes; CloudEvents headers hold UTF-8 text.
    public struct Header: Sendable, Hashable {
        public var name: String
        public var value: [UInt8]?
        public init(name: String, value: [UInt8]?) {
            self.name = name
            self.value = value
        }
        /// A header with a UTF-8 text value.
        public init(_ name: String, _ text: String) { self.init(name: name, value: Array(text.utf8)) }
    }

    /// The parts of a Kafka record the binding maps: key, value and headers (in order).
    public struct Message: Sendable, Hashable {
        public var key: [UInt8]?
        public var value: [UInt8]?
        public var headers: [Header]
        public init(key: [UInt8]? = nil, value: [UInt8]?, headers: [Header]) {
            self.key = key
            self.value = value
            self.headers = headers
        }

        /// The first header named `name` (compared case-insensitively).
        public func header(_ name: String) -> Header? {
            headers.first { $0.name.lowercased() == name }
        }
    }

    /// The content mode to write.
    public enum Mode: Sendable, Hashable {
        /// Attributes in `ce_` headers, data as the value (no data: no value, a tombstone).
        case binary
        /// The whole event as JSON in the value.
        case structured
    }

    /// How the record key is chosen. The binding maps the user's key by default; ``partitionKey``
    /// is its opt-in key mapper. Mapping never changes the event.
    public enum KeyMapping: Sendable, Hashable {
        /// No key.
        case none
        /// This key, as given.
        case key([UInt8])
        /// The `partitionkey` extension attribute, if present.
        case partitionKey
        /// The `subject` attribute, if present (FeedbackLoop keys every topic by entity = subject).
        case subject
    }

    /// The Kafka header prefix for attributes.
    public static let headerPrefix = "ce_"

    // MARK: Decoding

    /// Decodes a record in either mode, chosen by the `content-type` header as the binding says.
    /// The record key is not copied into the event.
    public static func decode(_ message: Message) throws(CloudEventError) -> CloudEvent {
        let contentType = try message.header("content-type").map { header throws(CloudEventError) in
            try utf8(header.value ?? [], path: "content-type")
        }
        if let contentType, contentType.lowercased().hasPrefix("application/cloudevents") {
            let essence = MediaType.essence(contentType)
            guard essence == JSONFormat.mediaType else {
                throw CloudEventError(
                    .unsupportedContentType, path: "content-type",
                    "\(essence) is not supported in Kafka (only \(JSONFormat.mediaType) structured mode)")
            }
            guard let value = message.value, !value.isEmpty else {
                throw CloudEventError(.malformed, path: nil, "a structured-mode record needs a value")
            }
            return try JSONFormat.decode(value)
        }
        var builder = EventBuilder()
        // specversion first: other versions may define other attributes.
        let attributeHeaders = message.headers.filter { $0.name.hasPrefix(headerPrefix) }
        for header in attributeHeaders.sorted(by: { ($0.name == "ce_specversion" ? 0 : 1) < ($1.name == "ce_specversion" ? 0 : 1) }) {
            let name = String(header.name.dropFirst(headerPrefix.count))
            if name == "datacontenttype" {
                throw CloudEventError(
                    .invalidAttribute, path: header.name, "binary mode carries datacontenttype in the `content-type` header, not `ce_datacontenttype`")
            }
            try builder.set(name, string: try utf8(header.value ?? [], path: header.name), path: header.name)
        }
        if let contentType { try builder.set("datacontenttype", string: contentType, path: "content-type") }
        builder.data = try binaryData(message.value, contentType: contentType)
        return try builder.build()
    }

    // MARK: Encoding

    /// The record for `event` in `mode`, keyed per `key`.
    public static func encode(_ event: CloudEvent, mode: Mode = .binary, key: KeyMapping = .none) -> Message {
        let recordKey: [UInt8]?
        switch key {
        case .none: recordKey = nil
        case .key(let bytes): recordKey = bytes
        case .partitionKey: recordKey = event.extensions["partitionkey"].map { Array($0.canonicalString.utf8) }
        case .subject: recordKey = event.subject.map { Array($0.utf8) }
        }
        switch mode {
        case .structured:
            return Message(
                key: recordKey, value: JSONFormat.encode(event),
                headers: [Header("content-type", "\(JSONFormat.mediaType); charset=UTF-8")])
        case .binary:
            var headers: [Header] = []
            for (name, value) in event.attributeStrings where name != "datacontenttype" {
                headers.append(Header(headerPrefix + name, value))
            }
            if let contentType = event.effectiveDataContentType { headers.append(Header("content-type", contentType)) }
            return Message(key: recordKey, value: event.data?.bytes, headers: headers)
        }
    }

    private static func utf8(_ bytes: [UInt8], path: String) throws(CloudEventError) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw CloudEventError(.invalidAttribute, path: path, "header value is not UTF-8")
        }
        return text
    }
}

/// The data of a binary-mode message: JSON content types are parsed (and must be valid JSON),
/// anything else is kept as bytes.
func binaryData(_ body: [UInt8]?, contentType: String?) throws(CloudEventError) -> EventData? {
    guard let body else { return nil }
    guard let contentType, MediaType.isJSON(contentType) else { return .binary(body) }
    do throws(JSONError) {
        return .json(try JSONValue.parse(body))
    } catch {
        throw CloudEventError(.invalidData, path: "data", "content type \(contentType) declares JSON but the data is not: \(error)")
    }
}

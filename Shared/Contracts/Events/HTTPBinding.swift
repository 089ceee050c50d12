import Foundation

/// The CloudEvents HTTP protocol binding: binary mode (`ce-` headers, percent-encoded values, the
/// body is the data), structured mode and batch mode (JSON format bodies).
public enum HTTPBinding {
    /// An HTTP message as the binding sees it: header fields in order, and the body.
    public struct Message: Sendable, Hashable {
        public var headers: [(name: String, value: String)]
        public var body: [UInt8]

        public init(headers: [(name: String, value: String)], body: [UInt8]) {
            self.headers = headers
            self.body = body
        }

        /// The first value of header `name` (names compare case-insensitively).
        public func header(_ name: String) -> String? {
            let lowered = name.lowercased()
            return headers.first { $0.name.lowercased() == lowered }?.value
        }

        public static func == (lhs: Message, rhs: Message) -> Bool {
            lhs.body == rhs.body && lhs.headers.elementsEqual(rhs.headers) { $0.name == $1.name && $0.value == $1.value }
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(body)
            for header in headers {
                hasher.combine(header.name)
                hasher.combine(header.value)
            }
        }
    }

    /// What an HTTP message carried.
    public enum Payload: Sendable, Hashable {
        /// One event (binary or structured mode).
        case single(CloudEvent)
        /// A batch: each element decoded on its own.
        case batch([Result<CloudEvent, CloudEventError>])
    }

    /// The content mode to write a single event in.
    public enum Mode: Sendable, Hashable {
        case binary
        case structured
    }

    /// The HTTP header prefix for attributes.
    public static let headerPrefix = "ce-"

    // MARK: Decoding

    /// Decodes a message in whichever mode its `Content-Type` announces.
    public static func decode(_ message: Message) throws(CloudEventError) -> Payload {
        let contentType = message.header("content-type")
        if let contentType {
            let lowered = contentType.lowercased()
            if lowered.hasPrefix("application/cloudevents-batch") {
                guard MediaType.essence(contentType) == JSONFormat.batchMediaType else {
                    throw CloudEventError(.unsupportedContentType, path: "Content-Type", "\(MediaType.essence(contentType)) is not a supported batch format")
                }
                return .batch(try JSONFormat.decodeBatch(message.body))
            }
            if lowered.hasPrefix("application/cloudevents") {
                guard MediaType.essence(contentType) == JSONFormat.mediaType else {
                    throw CloudEventError(.unsupportedContentType, path: "Content-Type", "\(MediaType.essence(contentType)) is not a supported event format")
                }
                return .single(try JSONFormat.decode(message.body))
            }
        }
        return .single(try decodeBinary(message, contentType: contentType))
    }

    private static func decodeBinary(_ message: Message, contentType: String?) throws(CloudEventError) -> CloudEvent {
        var builder = EventBuilder()
        let attributeHeaders = message.headers.filter { $0.name.lowercased().hasPrefix(headerPrefix) }
        // specversion first: other versions may define other attributes.
        let ordered = attributeHeaders.sorted { ($0.name.lowercased() == "ce-specversion" ? 0 : 1) < ($1.name.lowercased() == "ce-specversion" ? 0 : 1) }
        for header in ordered {
            let name = String(header.name.lowercased().dropFirst(headerPrefix.count))
            if name == "datacontenttype" {
                throw CloudEventError(.invalidAttribute, path: header.name, "a `ce-datacontenttype` header must not be present; binary mode uses `Content-Type`")
            }
            let value = try decodeHeaderValue(header.value, path: header.name)
            try builder.set(name, string: value, path: header.name)
        }
        if let contentType { try builder.set("datacontenttype", string: contentType, path: "Content-Type") }
        builder.data = try binaryData(message.body.isEmpty ? nil : message.body, contentType: contentType)
        return try builder.build()
    }

    // MARK: Encoding

    /// The message for one event in `mode`.
    public static func encode(_ event: CloudEvent, mode: Mode = .binary) -> Message {
        switch mode {
        case .structured:
            return Message(headers: [("Content-Type", "\(JSONFormat.mediaType); charset=UTF-8")], body: JSONFormat.encode(event))
        case .binary:
            var headers: [(name: String, value: String)] = []
            for (name, value) in event.attributeStrings where name != "datacontenttype" {
                headers.append((headerPrefix + name, percentEncode(value)))
            }
            if let contentType = event.effectiveDataContentType { headers.append(("Content-Type", contentType)) }
            return Message(headers: headers, body: event.data?.bytes ?? [])
        }
    }

    /// The batch-mode message for `events`.
    public static func encodeBatch(_ events: [CloudEvent]) -> Message {
        Message(headers: [("Content-Type", "\(JSONFormat.batchMediaType); charset=UTF-8")], body: JSONFormat.encodeBatch(events))
    }

    // MARK: Header values

    /// Percent-encodes an attribute value for a header: space, `"`, `%` and every character outside
    /// U+0021–U+007E become `%XY` per UTF-8 byte (upper-case hex).
    public static func percentEncode(_ value: String) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(value.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in value.utf8 {
            if byte >= 0x21 && byte <= 0x7E && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "%") {
                output.append(byte)
            } else {
                output.append(UInt8(ascii: "%"))
                output.append(hex[Int(byte >> 4)])
                output.append(hex[Int(byte & 0xF)])
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes a header value: first an RFC 7230 quoted-string (if the value is one), then one round
    /// of percent-decoding; the result must be valid UTF-8 (overlong forms such as `%C0%A0` are rejected).
    public static func decodeHeaderValue(_ raw: String, path: String) throws(CloudEventError) -> String {
        let trimmed = raw.trimmingCharacters(in: [" ", "\t"])
        var bytes = Array(trimmed.utf8)
        if bytes.first == UInt8(ascii: "\"") {
            bytes = try unquote(bytes, path: path)
        }
        var decoded: [UInt8] = []
        decoded.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) else {
                    throw CloudEventError(.invalidAttribute, path: path, "`%` must be followed by two hex digits")
                }
                decoded.append(high << 4 | low)
                index += 3
            } else {
                decoded.append(bytes[index])
                index += 1
            }
        }
        guard let text = String(validating: decoded, as: UTF8.self) else {
            throw CloudEventError(.invalidAttribute, path: path, "percent-decoded value is not valid UTF-8")
        }
        return text
    }

    /// `DQUOTE *( qdtext / quoted-pair ) DQUOTE`, the whole value.
    private static func unquote(_ bytes: [UInt8], path: String) throws(CloudEventError) -> [UInt8] {
        var output: [UInt8] = []
        var index = 1
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\\"):
                guard index + 1 < bytes.count else { break }
                output.append(bytes[index + 1])
                index += 2
                continue
            case UInt8(ascii: "\""):
                guard index == bytes.count - 1 else {
                    throw CloudEventError(.invalidAttribute, path: path, "text after the closing quote of a quoted header value")
                }
                return output
            default:
                output.append(bytes[index])
            }
            index += 1
        }
        throw CloudEventError(.invalidAttribute, path: path, "quoted header value has no closing quote")
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

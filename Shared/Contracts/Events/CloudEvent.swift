import Foundation

// MARK: - CloudEvent

/// A CloudEvents 1.0 event: context attributes and optional data.
///
/// Values decoded by ``JSONFormat``, ``KafkaBinding`` or ``HTTPBinding`` are valid by construction;
/// events built in code can be checked with ``validate()``. Encoders write whatever the value holds.
public struct CloudEvent: Sendable, Hashable {
    /// The only spec version this codec reads and writes.
    public static let specVersion = "1.0"

    /// Identifies the event; `(source, id)` is unique per distinct event (the dedupe key).
    public var id: String
    /// The context the event happened in (a URI-reference, absolute recommended).
    public var source: String
    /// The event type, e.g. `loop.observation.v1`.
    public var type: String
    /// The subject within the source; in FeedbackLoop the entity id and the Kafka key.
    public var subject: String?
    /// When the occurrence happened (RFC 3339); in FeedbackLoop the event time.
    public var time: Timestamp?
    /// The media type of ``data`` (RFC 2046). Absent with JSON data means `application/json`.
    public var dataContentType: String?
    /// The schema ``data`` adheres to (an absolute URI).
    public var dataSchema: String?
    /// Extension attributes by name (lower-case `a-z0-9`, not `data`).
    public var extensions: [String: ExtensionValue]
    /// The payload, if any.
    public var data: EventData?

    public init(
        id: String, source: String, type: String, subject: String? = nil, time: Timestamp? = nil,
        dataContentType: String? = nil, dataSchema: String? = nil,
        extensions: [String: ExtensionValue] = [:], data: EventData? = nil
    ) {
        self.id = id
        self.source = source
        self.type = type
        self.subject = subject
        self.time = time
        self.dataContentType = dataContentType
        self.dataSchema = dataSchema
        self.extensions = extensions
        self.data = data
    }

    /// The `(source, id)` pair that identifies duplicates.
    public var dedupeKey: String { "\(source)\u{1F}\(id)" }

    /// The data content type in effect: the declared one, or `application/json` for JSON data.
    public var effectiveDataContentType: String? {
        if let dataContentType { return dataContentType }
        if case .json = data { return "application/json" }
        return nil
    }

    /// The attributes as canonical strings, by name (core and extensions, not `data`).
    public var attributeStrings: [(name: String, value: String)] {
        var result: [(String, String)] = [("specversion", CloudEvent.specVersion), ("id", id), ("source", source), ("type", type)]
        if let subject { result.append(("subject", subject)) }
        if let time { result.append(("time", time.text)) }
        if let dataContentType { result.append(("datacontenttype", dataContentType)) }
        if let dataSchema { result.append(("dataschema", dataSchema)) }
        for (name, value) in extensions.sorted(by: { $0.key < $1.key }) { result.append((name, value.canonicalString)) }
        return result
    }

    /// Checks every attribute against the spec's constraints (names, types, non-empty values,
    /// URI forms, media type, string characters).
    public func validate() throws(CloudEventError) {
        var builder = EventBuilder()
        for (name, value) in attributeStrings where name != "time" && name != "specversion" {
            if let extensionValue = extensions[name], !CloudEvent.coreAttributes.contains(name) {
                try builder.setExtension(name, extensionValue, path: name)
            } else {
                try builder.set(name, string: value, path: name)
            }
        }
        builder.specVersion = CloudEvent.specVersion
        _ = try builder.build()
    }

    /// The names the spec defines (not extensions).
    public static let coreAttributes: Set<String> = [
        "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
    ]
}

// MARK: - Data and extensions

/// An event's payload.
public enum EventData: Sendable, Hashable {
    /// A JSON value: the content type is absent or JSON (`*/json`, `*/*+json`).
    case json(JSONValue)
    /// Text in a non-JSON content type, carried as the `data` string in the JSON format.
    case text(String)
    /// Bytes: carried as `data_base64` in the JSON format.
    case binary([UInt8])

    /// The payload as the bytes binary-mode messages carry: canonical JSON text, UTF-8 text, or the bytes.
    public var bytes: [UInt8] {
        switch self {
        case .json(let value): value.canonicalBytes()
        case .text(let text): Array(text.utf8)
        case .binary(let bytes): bytes
        }
    }
}

/// The value of an extension attribute in the CloudEvents type system.
///
/// The JSON format keeps booleans and integers typed; header-based bindings carry every value as
/// its canonical string, so after a binary-mode hop every extension reads back as ``string(_:)``.
public enum ExtensionValue: Sendable, Hashable, CustomStringConvertible {
    case string(String)
    case bool(Bool)
    /// A CloudEvents Integer: 32-bit signed.
    case integer(Int32)

    /// The canonical string encoding (`true`/`false`, decimal digits, or the string itself).
    public var canonicalString: String {
        switch self {
        case .string(let value): value
        case .bool(let value): value ? "true" : "false"
        case .integer(let value): String(value)
        }
    }

    public var description: String { canonicalString }

    var jsonValue: JSONValue {
        switch self {
        case .string(let value): .string(value)
        case .bool(let value): .bool(value)
        case .integer(let value): .int(Int64(value))
        }
    }
}

// MARK: - Building and validating

/// Collects attributes from any binding, validating each, then checks the required ones.
struct EventBuilder {
    var specVersion: String?
    var id: String?
    var source: String?
    var type: String?
    var subject: String?
    var time: Timestamp?
    var dataContentType: String?
    var dataSchema: String?
    var extensions: [String: ExtensionValue] = [:]
    var data: EventData?
    private var seen: Set<String> = []

    /// Sets an attribute from its canonical string (headers, or JSON strings).
    mutating func set(_ name: String, string value: String, path: String) throws(CloudEventError) {
        try checkName(name, path: path)
        guard seen.insert(name).inserted else {
            throw CloudEventError(.invalidAttribute, path: path, "attribute `\(name)` appears more than once")
        }
        switch name {
        case "specversion":
            guard value == CloudEvent.specVersion else {
                throw CloudEventError(.unsupportedSpecVersion, path: path, "specversion \"\(value)\" is not supported (only 1.0)")
            }
            specVersion = value
        case "id":
            id = try nonEmptyString(value, path: path, name: name)
        case "source":
            let value = try nonEmptyString(value, path: path, name: name)
            guard URIForm.isURIReference(value) else {
                throw CloudEventError(.invalidAttribute, path: path, "source \"\(value)\" is not a URI-reference (RFC 3986)")
            }
            source = value
        case "type":
            type = try nonEmptyString(value, path: path, name: name)
        case "subject":
            subject = try nonEmptyString(value, path: path, name: name)
        case "time":
            do throws(TimestampError) {
                time = try Timestamp(rfc3339: value)
            } catch {
                throw CloudEventError(.invalidAttribute, path: path, "time \"\(value)\" is not an RFC 3339 timestamp: \(error.message)")
            }
        case "datacontenttype":
            guard MediaType.isValid(value) else {
                throw CloudEventError(.invalidAttribute, path: path, "datacontenttype \"\(value)\" is not a media type (RFC 2046)")
            }
            dataContentType = value
        case "dataschema":
            let value = try nonEmptyString(value, path: path, name: name)
            guard URIForm.isAbsoluteURI(value) else {
                throw CloudEventError(.invalidAttribute, path: path, "dataschema \"\(value)\" is not an absolute URI (RFC 3986 §4.3)")
            }
            dataSchema = value
        default:
            try checkString(value, path: path, name: name)
            extensions[name] = .string(value)
        }
    }

    /// Sets a typed extension attribute (from the JSON format).
    mutating func setExtension(_ name: String, _ value: ExtensionValue, path: String) throws(CloudEventError) {
        try checkName(name, path: path)
        guard seen.insert(name).inserted else {
            throw CloudEventError(.invalidAttribute, path: path, "attribute `\(name)` appears more than once")
        }
        if case .string(let text) = value { try checkString(text, path: path, name: name) }
        extensions[name] = value
    }

    /// The event, once every required attribute is present (checked in spec order).
    func build() throws(CloudEventError) -> CloudEvent {
        guard specVersion != nil else { throw CloudEventError(.missingAttribute, path: "specversion", "required attribute `specversion` is missing") }
        guard let id else { throw CloudEventError(.missingAttribute, path: "id", "required attribute `id` is missing") }
        guard let source else { throw CloudEventError(.missingAttribute, path: "source", "required attribute `source` is missing") }
        guard let type else { throw CloudEventError(.missingAttribute, path: "type", "required attribute `type` is missing") }
        return CloudEvent(
            id: id, source: source, type: type, subject: subject, time: time, dataContentType: dataContentType,
            dataSchema: dataSchema, extensions: extensions, data: data)
    }

    private func checkName(_ name: String, path: String) throws(CloudEventError) {
        guard !name.isEmpty, name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) }) else {
            throw CloudEventError(.invalidAttribute, path: path, "attribute name `\(name)` must consist of lower-case letters a-z and digits 0-9")
        }
        guard name != "data" else {
            throw CloudEventError(.invalidAttribute, path: path, "`data` is reserved and cannot be an attribute name")
        }
    }

    private func nonEmptyString(_ value: String, path: String, name: String) throws(CloudEventError) -> String {
        guard !value.isEmpty else { throw CloudEventError(.invalidAttribute, path: path, "`\(name)` must be a non-empty string") }
        try checkString(value, path: path, name: name)
        return value
    }

    /// The String type forbids control characters (U+0000–U+001F, U+007F–U+009F) and noncharacters.
    private func checkString(_ value: String, path: String, name: String) throws(CloudEventError) {
        var plain = true
        for byte in value.utf8 where byte < 0x20 || byte >= 0x7F {
            plain = false
            break
        }
        if plain { return }
        for scalar in value.unicodeScalars {
            let code = scalar.value
            let isControl = code < 0x20 || (code >= 0x7F && code <= 0x9F)
            let isNoncharacter = (code >= 0xFDD0 && code <= 0xFDEF) || (code & 0xFFFE) == 0xFFFE
            if isControl || isNoncharacter {
                throw CloudEventError(
                    .invalidAttribute, path: path,
                    "`\(name)` contains U+\(String(code, radix: 16, uppercase: true)), which CloudEvents strings disallow")
            }
        }
    }
}

// MARK: - URIs and media types

/// RFC 3986 checks, character-level: enough to reject what is clearly not a URI.
enum URIForm {
    /// Unreserved, reserved and `%` (followed by two hex digits).
    static func isURIReference(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, bytes[index + 1].isHexDigit, bytes[index + 2].isHexDigit else { return false }
                index += 3
                continue
            }
            guard byte < 0x80, uriCharacters[Int(byte)] else { return false }
            index += 1
        }
        return true
    }

    /// `scheme ":" hier-part [ "?" query ]`: a scheme, and no fragment.
    static func isAbsoluteURI(_ text: String) -> Bool {
        guard isURIReference(text), !text.contains("#"), let colon = text.firstIndex(of: ":") else { return false }
        let scheme = text[..<colon].utf8
        guard let first = scheme.first, first.isLetter else { return false }
        return scheme.allSatisfy { $0.isLetter || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
    }

    private static let uriCharacters: [Bool] = (0..<128).map { code in
        let scalar = Unicode.Scalar(UInt8(code))
        if ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar) { return true }
        return "-._~:/?#[]@!$&'()*+,;=".unicodeScalars.contains(scalar)
    }
}

/// RFC 2046 / RFC 7231 media types: `type "/" subtype *( OWS ";" OWS token "=" ( token / quoted-string ) )`.
public enum MediaType {
    /// Whether `text` is a well-formed media type (parameters included).
    public static func isValid(_ text: String) -> Bool {
        let parts = text.split(separator: ";", omittingEmptySubsequences: false)
        let essence = parts[0].trimmingCharacters(in: .whitespaces)
        let names = essence.split(separator: "/", omittingEmptySubsequences: false)
        guard names.count == 2, isToken(names[0]), isToken(names[1]) else { return false }
        for parameter in parts.dropFirst() {
            let pair = parameter.trimmingCharacters(in: .whitespaces)
            guard let equals = pair.firstIndex(of: "="), isToken(pair[..<equals]) else { return false }
            let value = pair[pair.index(after: equals)...]
            guard isToken(value) || (value.count >= 2 && value.first == "\"" && value.last == "\"") else { return false }
        }
        return true
    }

    /// The media type without parameters, lower-cased (`Application/JSON; charset=utf-8` → `application/json`).
    public static func essence(_ text: String) -> String {
        let end = text.firstIndex(of: ";") ?? text.endIndex
        return text[..<end].trimmingCharacters(in: .whitespaces).lowercased()
    }

    /// Whether the media type declares JSON content: `*/json` or `*/*+json`.
    public static func isJSON(_ text: String) -> Bool {
        let essence = essence(text)
        guard let slash = essence.firstIndex(of: "/") else { return false }
        let subtype = essence[essence.index(after: slash)...]
        return subtype == "json" || subtype.hasSuffix("+json")
    }

    private static func isToken(_ text: some StringProtocol) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { byte in
            byte > 0x20 && byte < 0x7F && !"()<>@,;:\\\"/[]?={}".utf8.contains(byte)
        }
    }
}

extension UInt8 {
    var isHexDigit: Bool {
        (self >= 0x30 && self <= 0x39) || (self >= 0x41 && self <= 0x46) || (self >= 0x61 && self <= 0x66)
    }
    var isLetter: Bool { (self >= 0x41 && self <= 0x5A) || (self >= 0x61 && self <= 0x7A) }
}

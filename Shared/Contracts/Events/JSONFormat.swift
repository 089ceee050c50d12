import Foundation

/// The CloudEvents JSON event format: structured mode (`application/cloudevents+json`) and
/// batch mode (`application/cloudevents-batch+json`).
public enum JSONFormat {
    /// The structured-mode media type.
    public static let mediaType = "application/cloudevents+json"
    /// The batch-mode media type.
    public static let batchMediaType = "application/cloudevents-batch+json"

    // MARK: Decoding

    /// Decodes one structured-mode event.
    public static func decode(_ bytes: [UInt8]) throws(CloudEventError) -> CloudEvent {
        try decode(JSONValue.parse(bytes, orThrow: "event"))
    }

    /// Decodes one structured-mode event from raw bytes.
    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(CloudEventError) -> CloudEvent {
        var parser = JSONParser()
        return try decode(buffer, parser: &parser)
    }

    /// Decodes one structured-mode event from raw bytes with a reused parser (the hot path: one
    /// parser per task saves its scratch allocations on every event).
    public static func decode(_ buffer: UnsafeRawBufferPointer, parser: inout JSONParser) throws(CloudEventError) -> CloudEvent {
        let value: JSONValue
        do throws(JSONError) {
            value = try parser.parse(buffer)
        } catch {
            throw CloudEventError(.malformed, path: nil, "the event is not valid JSON: \(error)")
        }
        return try decode(value)
    }

    /// Decodes a batch: the array itself must parse, then each element succeeds or fails on its own
    /// (errors carry the element's index and an `[index].` path prefix).
    public static func decodeBatch(_ bytes: [UInt8]) throws(CloudEventError) -> [Result<CloudEvent, CloudEventError>] {
        let value = try JSONValue.parse(bytes, orThrow: "batch")
        guard case .array(let elements) = value else {
            throw CloudEventError(.malformed, path: nil, "a batch must be a JSON array, found \(value.typeName)")
        }
        return elements.enumerated().map { index, element in
            do throws(CloudEventError) {
                return .success(try decode(element))
            } catch {
                return .failure(error.inBatch(at: index))
            }
        }
    }

    /// Decodes one event from an already parsed JSON value.
    public static func decode(_ value: JSONValue) throws(CloudEventError) -> CloudEvent {
        guard case .object(let object) = value else {
            throw CloudEventError(.malformed, path: nil, "an event must be a JSON object, found \(value.typeName)")
        }
        var builder = EventBuilder()
        // specversion first: other versions may define other attributes.
        switch object["specversion"] {
        case nil, .null?: throw CloudEventError(.missingAttribute, path: "specversion", "required attribute `specversion` is missing")
        case .string(let version)?: try builder.set("specversion", string: version, path: "specversion")
        case let other?: throw CloudEventError(.invalidAttribute, path: "specversion", "`specversion` must be a string, found \(other.typeName)")
        }
        var dataMember: JSONValue?
        var base64Member: JSONValue?
        for member in object where member.key != "specversion" {
            let name = member.key
            switch name {
            case "data": dataMember = member.value
            case "data_base64": base64Member = member.value
            default:
                switch member.value {
                case .null: continue
                case .string(let text): try builder.set(name, string: text, path: name)
                case .bool(let flag) where !CloudEvent.coreAttributes.contains(name):
                    try builder.setExtension(name, .bool(flag), path: name)
                case .int(let number) where !CloudEvent.coreAttributes.contains(name):
                    guard let integer = Int32(exactly: number) else {
                        throw CloudEventError(.invalidAttribute, path: name, "extension `\(name)` is \(number), outside the 32-bit Integer range")
                    }
                    try builder.setExtension(name, .integer(integer), path: name)
                case let other:
                    let expected = CloudEvent.coreAttributes.contains(name) ? "a string" : "a string, boolean or integer"
                    throw CloudEventError(.invalidAttribute, path: name, "`\(name)` must be \(expected), found \(other.typeName)\(other.isFraction ? " with a fraction" : "")")
                }
            }
        }
        builder.data = try decodeData(data: dataMember, base64: base64Member, contentType: builder.dataContentType)
        return try builder.build()
    }

    private static func decodeData(data: JSONValue?, base64: JSONValue?, contentType: String?) throws(CloudEventError) -> EventData? {
        if let base64, !base64.isNull {
            guard data == nil else {
                throw CloudEventError(.invalidData, path: "data_base64", "`data` and `data_base64` are mutually exclusive")
            }
            guard case .string(let text) = base64 else {
                throw CloudEventError(.invalidData, path: "data_base64", "`data_base64` must be a string, found \(base64.typeName)")
            }
            guard let decoded = Data(base64Encoded: text) else {
                throw CloudEventError(.invalidData, path: "data_base64", "`data_base64` is not valid Base64 (RFC 4648)")
            }
            return .binary(Array(decoded))
        }
        guard let data else { return nil }
        if contentType.map(MediaType.isJSON) ?? true { return .json(data) }
        if data.isNull { return nil }
        guard case .string(let text) = data else {
            throw CloudEventError(
                .invalidData, path: "data",
                "datacontenttype \(contentType ?? "") is not JSON, so `data` must be a string, found \(data.typeName)")
        }
        return .text(text)
    }

    // MARK: Encoding

    /// The event as a JSON object (members per the JSON format; extensions keep their types).
    public static func jsonValue(of event: CloudEvent) -> JSONValue {
        var object = JSONObject()
        object["specversion"] = .string(CloudEvent.specVersion)
        object["id"] = .string(event.id)
        object["source"] = .string(event.source)
        object["type"] = .string(event.type)
        if let subject = event.subject { object["subject"] = .string(subject) }
        if let time = event.time { object["time"] = .string(time.text) }
        if let contentType = event.dataContentType { object["datacontenttype"] = .string(contentType) }
        if let schema = event.dataSchema { object["dataschema"] = .string(schema) }
        for (name, value) in event.extensions { object[name] = value.jsonValue }
        switch event.data {
        case nil: break
        case .json(let value)?: object["data"] = value
        case .text(let text)?: object["data"] = .string(text)
        case .binary(let bytes)?: object["data_base64"] = .string(Data(bytes).base64EncodedString())
        }
        return .object(object)
    }

    /// The structured-mode bytes of `event` (canonical JSON).
    public static func encode(_ event: CloudEvent) -> [UInt8] {
        jsonValue(of: event).canonicalBytes()
    }

    /// The batch-mode bytes of `events` (a canonical JSON array).
    public static func encodeBatch(_ events: [CloudEvent]) -> [UInt8] {
        JSONValue.array(events.map(jsonValue(of:))).canonicalBytes()
    }
}

extension JSONValue {
    /// Parses, turning a JSON error into a `malformed` CloudEvents error.
    static func parse(_ bytes: [UInt8], orThrow what: String) throws(CloudEventError) -> JSONValue {
        do throws(JSONError) {
            return try JSONValue.parse(bytes)
        } catch {
            throw CloudEventError(.malformed, path: nil, "the \(what) is not valid JSON: \(error)")
        }
    }

    var isFraction: Bool {
        if case .double = self { return true }
        return false
    }
}

import Contracts
import Kafka
import ServiceKit

/// An event that passed validation, normalized and redacted: the `loop.events` record to write.
public struct ValidatedEvent: Sendable {
    /// The 64-bit hash of `(source, id)`, the dedupe key (see ``DedupeStore``).
    public var dedupeHash: UInt64
    public var id: String
    public var kind: EventKind
    /// The binary-mode record: `ce_*` headers, key = subject, value = canonical JSON data.
    public var record: OutgoingRecord
}

/// Checks events against the CloudEvents contract and `loop.yaml`, removes or hashes PII fields and
/// builds the canonical binary-mode record for `loop.events`.
///
/// Checks, in order: payload size, `subject`, known type and schema version, `time` (per the
/// missing-time policy), data is a JSON object, each member (the kind's own fields, declared
/// fields' type, bounds and values, unknown fields per policy), required fields, then PII.
public struct EventValidator: Sendable {
    let config: LoopConfig
    let eventsTopic: String
    let piiHasher: KeyedHash
    /// Declared fields plus, for quick lookup, whether any needs redaction.
    let fields: [String: FieldSpec]
    let hasPII: Bool
    let required: [String]
    let ownFields: [EventKind: [String: OwnField]]

    /// A validator for `config`; `piiKey` keys the hash of `pii: hash` fields.
    /// - Throws: ``ServiceError`` `missing_setting` when a field is `pii: hash` and there is no key.
    public init(config: LoopConfig, piiKey: [UInt8]?) throws(ServiceError) {
        let hashed = config.fields.filter { $0.value.pii == .hash }.map(\.key).sorted()
        if !hashed.isEmpty, piiKey?.isEmpty ?? true {
            throw ServiceError(
                .missingSetting, "loop.yaml hashes the PII fields \(hashed.joined(separator: ", ")): set LOOP_PII_KEY (or --pii-key)")
        }
        self.config = config
        self.eventsTopic = config.topics.names.events
        self.piiHasher = KeyedHash(key: piiKey ?? [])
        self.fields = config.fields
        self.hasPII = config.fields.values.contains { $0.pii != .none }
        self.required = config.fields.filter(\.value.required).map(\.key).sorted()
        var own: [EventKind: [String: OwnField]] = [:]
        for kind in EventKind.allCases { own[kind] = Self.ownFields(of: kind, labelField: config.label.field) }
        self.ownFields = own
    }

    // MARK: - Validation

    /// Validates `event`, whose input was `size` bytes, stamping `ingestTime` (RFC 3339).
    public func validate(
        _ event: CloudEvent, size: Int, ingestTime: Timestamp, traces: inout TraceGenerator
    ) -> Result<ValidatedEvent, Rejection> {
        do throws(Rejection) {
            return .success(try check(event, size: size, ingestTime: ingestTime, traces: &traces))
        } catch {
            return .failure(error)
        }
    }

    /// Rejects input larger than `events.maxPayloadBytes` before it is decoded.
    public func checkSize(_ size: Int) -> Rejection? {
        guard size > config.events.maxPayloadBytes else { return nil }
        return Rejection(.tooLarge, field: nil, "the event is \(size) bytes, over the limit of \(config.events.maxPayloadBytes)")
    }

    private func check(
        _ event: CloudEvent, size: Int, ingestTime: Timestamp, traces: inout TraceGenerator
    ) throws(Rejection) -> ValidatedEvent {
        if let tooLarge = checkSize(size) { throw tooLarge }
        guard let subject = event.subject else {
            throw Rejection(.missingAttribute, field: "subject", "`subject` (the entity) is required")
        }
        guard let type = EventType(event.type) else {
            throw Rejection(.unknownType, field: "type", "`\(event.type)` is not a FeedbackLoop event type (loop.<kind>.v<n>)")
        }
        guard type.isAccepted else {
            throw Rejection(
                .unsupportedVersion, field: "type",
                "`\(event.type)`: schema version \(type.version.number) is not accepted (current: \(type.kind.currentType))")
        }
        let time: Timestamp
        if let given = event.time {
            time = given
        } else if config.events.missingTime == .stamp {
            time = ingestTime
        } else {
            throw Rejection(.missingAttribute, field: "time", "`time` (the event time) is required")
        }
        guard case .json(let json)? = event.data else {
            let found = event.data == nil ? "no data" : "data of type \(event.dataContentType ?? "unknown")"
            throw Rejection(.invalidData, field: "data", "data must be a JSON object, found \(found)")
        }
        guard case .object(let object) = json else {
            throw Rejection(.invalidData, field: "data", "data must be a JSON object, found \(json.typeName)")
        }
        let data = try checkData(object, kind: type.kind)

        var headers: [KafkaHeader] = []
        headers.reserveCapacity(11 + event.extensions.count)
        headers.append(KafkaHeader(key: "ce_specversion", string: CloudEvent.specVersion))
        headers.append(KafkaHeader(key: "ce_id", string: event.id))
        headers.append(KafkaHeader(key: "ce_source", string: event.source))
        headers.append(KafkaHeader(key: "ce_type", string: event.type))
        headers.append(KafkaHeader(key: "ce_subject", string: subject))
        headers.append(KafkaHeader(key: "ce_time", string: time.text))
        if let schema = event.dataSchema { headers.append(KafkaHeader(key: "ce_dataschema", string: schema)) }
        var traceparent: String?
        for (name, value) in event.extensions {
            switch name {
            case "ingesttime": continue
            case "traceparent":
                if case .string(let text) = value, TraceGenerator.isValid(text) { traceparent = text }
            default: headers.append(KafkaHeader(key: "ce_" + name, string: value.canonicalString))
            }
        }
        headers.append(KafkaHeader(key: "ce_ingesttime", string: ingestTime.text))
        headers.append(KafkaHeader(key: "ce_traceparent", string: traceparent ?? traces.next()))
        headers.append(KafkaHeader(key: "content-type", string: "application/json"))
        let record = OutgoingRecord(
            topic: eventsTopic, key: Array(subject.utf8), value: JSONValue.object(data).canonicalBytes(), headers: headers)
        return ValidatedEvent(dedupeHash: DedupeStore.hash(event.dedupeKey), id: event.id, kind: type.kind, record: record)
    }

    /// Checks every member of `data` and returns it with PII removed or hashed and unknown fields
    /// handled per policy.
    private func checkData(_ data: JSONObject, kind: EventKind) throws(Rejection) -> JSONObject {
        var output = data
        let own = ownFields[kind] ?? [:]
        for member in data {
            let name = member.key
            let value = member.value
            if value.isNull {
                output[name] = nil
                continue
            }
            if let ownField = own[name] {
                try checkOwn(name, value, ownField)
                if name == config.label.field, let spec = fields[name] { try checkDeclared(name, value, spec) }
                continue
            }
            if let spec = fields[name] {
                try checkDeclared(name, value, spec)
                switch spec.pii {
                case .none: break
                case .drop: output[name] = nil
                case .hash: output[name] = .string(hash(value))
                }
                continue
            }
            switch config.events.unknownFields {
            case .reject:
                throw Rejection(.unknownField, field: "data." + name, "`\(name)` is not a field loop.yaml declares")
            case .drop: output[name] = nil
            case .keep: break
            }
        }
        for (name, ownField) in own where ownField.required {
            guard let value = data[name], !value.isNull else {
                throw Rejection(.missingField, field: "data." + name, "\(kind.currentType) events need `\(name)`")
            }
        }
        if kind == .observation || kind == .scoreRequest {
            for name in required {
                guard let value = data[name], !value.isNull else {
                    throw Rejection(.missingField, field: "data." + name, "`\(name)` is required by loop.yaml")
                }
            }
        }
        return output
    }

    // MARK: - The kinds' own fields

    /// A field an event kind itself defines (`requestId`, `label`, …).
    struct OwnField {
        enum Shape { case identifier, text, number, label }
        var shape: Shape
        var required: Bool
    }

    static func ownFields(of kind: EventKind, labelField: String) -> [String: OwnField] {
        switch kind {
        case .observation: [:]
        case .scoreRequest: [PayloadField.requestId: OwnField(shape: .identifier, required: true)]
        case .outcome:
            [PayloadField.requestId: OwnField(shape: .identifier, required: true),
             labelField: OwnField(shape: .label, required: true),
             PayloadField.value: OwnField(shape: .number, required: false)]
        case .review:
            [PayloadField.requestId: OwnField(shape: .identifier, required: true),
             labelField: OwnField(shape: .label, required: true),
             PayloadField.reviewer: OwnField(shape: .identifier, required: true),
             PayloadField.note: OwnField(shape: .text, required: false)]
        }
    }

    private func checkOwn(_ name: String, _ value: JSONValue, _ own: OwnField) throws(Rejection) {
        let path = "data." + name
        switch own.shape {
        case .identifier:
            guard case .string(let text) = value else {
                throw Rejection(.fieldType, field: path, "`\(name)` must be a string, found \(value.typeName)")
            }
            guard !text.isEmpty else { throw Rejection(.missingField, field: path, "`\(name)` must not be empty") }
        case .text:
            guard case .string = value else {
                throw Rejection(.fieldType, field: path, "`\(name)` must be a string, found \(value.typeName)")
            }
        case .number:
            guard value.doubleValue != nil else {
                throw Rejection(.fieldType, field: path, "`\(name)` must be a number, found \(value.typeName)")
            }
        case .label:
            switch value {
            case .string, .int, .bool: break
            case .double(let number) where number.rounded() == number: break
            default:
                throw Rejection(.fieldType, field: path, "`\(name)` must be a string or integer label, found \(value.typeName)")
            }
        }
    }

    // MARK: - Declared fields

    private func checkDeclared(_ name: String, _ value: JSONValue, _ spec: FieldSpec) throws(Rejection) {
        let path = "data." + name
        // PII values never appear in messages.
        let shown = spec.pii == .none ? " \(value.canonicalString)" : ""
        func typeError(_ expected: String) -> Rejection {
            Rejection(.fieldType, field: path, "`\(name)` must be \(expected), found \(value.typeName)")
        }
        switch spec.kind {
        case .double:
            guard let number = value.doubleValue else { throw typeError("a number") }
            try checkBounds(name, number, spec, shown: shown)
        case .int:
            guard let number = value.int64Value else {
                throw value.doubleValue == nil ? typeError("an integer") : Rejection(.fieldType, field: path, "`\(name)` must be an integer, found a fraction")
            }
            try checkBounds(name, Double(number), spec, shown: shown)
        case .bool:
            guard case .bool = value else { throw typeError("a boolean") }
        case .string:
            guard case .string(let text) = value else { throw typeError("a string") }
            if let values = spec.values, !values.contains(text) {
                throw Rejection(.invalidValue, field: path, "`\(name)`\(shown) is not one of \(values.joined(separator: ", "))")
            }
        case .category:
            let text: String
            switch value {
            case .string(let string): text = string
            case .int(let number): text = String(number)
            case .bool(let flag): text = flag ? "true" : "false"
            default: throw typeError("a category (string or integer)")
            }
            if let values = spec.values, !values.contains(text) {
                throw Rejection(.invalidValue, field: path, "`\(name)`\(shown) is not one of \(values.joined(separator: ", "))")
            }
        }
    }

    private func checkBounds(_ name: String, _ number: Double, _ spec: FieldSpec, shown: String) throws(Rejection) {
        if let min = spec.min, number < min {
            throw Rejection(.outOfRange, field: "data." + name, "`\(name)`\(shown) is below the minimum \(min)")
        }
        if let max = spec.max, number > max {
            throw Rejection(.outOfRange, field: "data." + name, "`\(name)`\(shown) is above the maximum \(max)")
        }
    }

    // MARK: - PII

    /// The keyed hash that replaces a `pii: hash` value: hex HMAC-SHA256 of the string (or, for
    /// other JSON values, of their canonical text).
    func hash(_ value: JSONValue) -> String {
        piiHasher.hex(value.stringValue ?? value.canonicalString)
    }

    /// `data` with every declared PII field dropped or hashed, the rest untouched (used for
    /// dead-letter bodies, which must not carry PII either).
    func redact(_ data: JSONObject) -> (JSONObject, changed: Bool) {
        guard hasPII else { return (data, false) }
        var output = data
        var changed = false
        for member in data {
            guard let spec = fields[member.key], spec.pii != .none else { continue }
            changed = true
            output[member.key] = spec.pii == .drop ? nil : .string(hash(member.value))
        }
        return (output, changed)
    }
}

// MARK: - Trace context

/// Starts W3C `traceparent` values for events that arrive without one: random trace and span ids
/// from a fast generator seeded once from the system.
public struct TraceGenerator: Sendable {
    private var state: UInt64

    public init() {
        var system = SystemRandomNumberGenerator()
        state = system.next()
    }

    /// A new `00-<trace>-<span>-01` value.
    public mutating func next() -> String {
        String(decoding: nextBytes(), as: UTF8.self)
    }

    /// A new `00-<trace>-<span>-01` value as its 55 ASCII bytes.
    public mutating func nextBytes() -> [UInt8] {
        let words = (nextWord(), nextWord() | 1, nextWord() | 1)
        return [UInt8](unsafeUninitializedCapacity: 55) { bytes, count in
            bytes[0] = 0x30
            bytes[1] = 0x30
            bytes[2] = 0x2D
            Self.writeHex(words.0, into: bytes, at: 3)
            Self.writeHex(words.1, into: bytes, at: 19)
            bytes[35] = 0x2D
            Self.writeHex(words.2, into: bytes, at: 36)
            bytes[52] = 0x2D
            bytes[53] = 0x30
            bytes[54] = 0x31
            count = 55
        }
    }

    /// Whether `text` is a well-formed version-00 `traceparent` with non-zero ids.
    public static func isValid(_ text: String) -> Bool {
        isValid(Array(text.utf8))
    }

    /// Whether `bytes` are a well-formed version-00 `traceparent` with non-zero ids.
    public static func isValid(_ bytes: [UInt8]) -> Bool {
        guard bytes.count == 55, bytes[0] == 0x30, bytes[1] == 0x30, bytes[2] == 0x2D, bytes[35] == 0x2D, bytes[52] == 0x2D else {
            return false
        }
        func isHex(_ range: Range<Int>) -> Bool {
            bytes[range].allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
        }
        func isZero(_ range: Range<Int>) -> Bool { bytes[range].allSatisfy { $0 == 0x30 } }
        return isHex(3..<35) && isHex(36..<52) && isHex(53..<55) && !isZero(3..<35) && !isZero(36..<52)
    }

    /// SplitMix64.
    private mutating func nextWord() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private static func writeHex(_ word: UInt64, into bytes: UnsafeMutableBufferPointer<UInt8>, at start: Int) {
        for index in 0..<16 {
            let nibble = UInt8((word >> UInt64(60 - index * 4)) & 0xF)
            bytes[start + index] = nibble < 10 ? 0x30 + nibble : 0x57 + nibble
        }
    }
}

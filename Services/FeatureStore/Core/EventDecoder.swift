import Contracts
import Features
import Kafka


/// Turns `loop.events` records (CloudEvents in Kafka binary mode) into events for
/// ``EntityFeatureState/apply(time:type:values:)``, filtering by the `ce_type` header before the
/// value is parsed.
///
/// The hot path builds no JSON tree and no dictionary: a flat data object (what ingest writes) is
/// scanned once and only the numbers of fields a feature reads are converted, straight into the
/// caller's value row (``FeatureSchema/eventFields`` order); `ce_time` in UTC (`…Z`) is read
/// straight from its bytes. Anything else (nested values, escapes, offsets) takes the general
/// parsers, with the same result.
struct EventDecoder: Sendable {
    /// What became of one record.
    enum Decoded {
        /// An event to apply to `entity`: its time (seconds since the epoch) and type; its field
        /// values are in the row given to ``EventDecoder/decode(_:values:)``. `key` is the
        /// entity's UTF-8 bytes (its changelog records' key): the record's own bytes when they are
        /// valid UTF-8, so no copy is made.
        case event(entity: String, key: [UInt8], time: Double, type: String)
        /// A type no feature reads.
        case ignored
        /// A record that cannot be an event (no entity, time or JSON object data).
        case invalid(String)
    }

    /// Accepted types: their bytes and one shared `String` each (a handful, so a scan compares
    /// fewer bytes than hashing a key would).
    private let acceptedTypes: [(bytes: [UInt8], name: String)]
    private let acceptsEveryType: Bool
    /// The fields features read, in ``FeatureSchema/eventFields`` order, as bytes.
    private let fieldBytes: [[UInt8]]
    /// The same fields by name (for the general parser).
    private let fieldIndex: [String: Int]

    init(schema: FeatureSchema) {
        var types: [[UInt8]: String] = [:]
        var everyType = false
        for feature in schema.features {
            if feature.eventTypes.isEmpty { everyType = true }
            for type in feature.eventTypes { types[Array(type.utf8)] = type }
        }
        acceptedTypes = types.map { (bytes: $0.key, name: $0.value) }
        acceptsEveryType = everyType
        fieldBytes = schema.eventFields.map { Array($0.utf8) }
        fieldIndex = Dictionary(uniqueKeysWithValues: schema.eventFields.enumerated().map { ($0.element, $0.offset) })
    }

    /// The number of values in a row: one per field the features read.
    var fieldCount: Int { fieldBytes.count }

    /// Decodes `record`; for an event, `values` (``fieldCount`` entries) receives its field
    /// values, NaN where it has none. `values` is undefined for the other outcomes.
    func decode(_ record: ConsumedRecord, values: UnsafeMutableBufferPointer<Double>) -> Decoded {
        var typeBytes: [UInt8]?
        var timeBytes: [UInt8]?
        var subjectBytes: [UInt8]?
        var contentType: [UInt8]?
        for header in record.headers {
            switch header.key {
            case "ce_type": typeBytes = header.value
            case "ce_time": timeBytes = header.value
            case "ce_subject": subjectBytes = header.value
            case "content-type": contentType = header.value
            default: continue
            }
        }
        guard let typeBytes else {
            if let contentType, String(decoding: contentType, as: UTF8.self).lowercased().hasPrefix("application/cloudevents") {
                return decodeStructured(record, values: values)
            }
            return .invalid("no ce_type header")
        }
        let type: String
        if let known = acceptedType(typeBytes) {
            type = known
        } else if acceptsEveryType {
            type = String(decoding: typeBytes, as: UTF8.self)
        } else {
            return .ignored
        }
        guard let entityBytes = record.key ?? subjectBytes, !entityBytes.isEmpty else { return .invalid("no entity (key or ce_subject)") }
        guard let timeBytes else { return .invalid("no ce_time header") }
        let seconds: Double
        do { seconds = try Timestamp.epochSeconds(rfc3339: timeBytes) } catch {
            return .invalid("ce_time is not an RFC 3339 time")
        }
        let entity: String
        let key: [UInt8]
        if let valid = String(validating: entityBytes, as: UTF8.self) {
            (entity, key) = (valid, entityBytes)
        } else {
            entity = String(decoding: entityBytes, as: UTF8.self)
            key = Array(entity.utf8)
        }
        let value = record.value ?? []
        let scanned = value.withUnsafeBufferPointer { scanFlatObject($0, into: values) }
        if scanned { return .event(entity: entity, key: key, time: seconds, type: type) }
        let data: JSONValue
        do {
            data = try JSONValue.parse(value)
        } catch {
            return .invalid("the value is not JSON: \(error)")
        }
        return event(entity: entity, type: type, seconds: seconds, data: data, values: values)
    }

    /// The shared name of an accepted type given by its bytes.
    private func acceptedType(_ bytes: [UInt8]) -> String? {
        for type in acceptedTypes where type.bytes == bytes { return type.name }
        return nil
    }

    // MARK: - Fast paths

    /// Reads the numeric values of the wanted fields of a flat JSON object without escapes in
    /// its keys into `values` (NaN where absent); `false` when the bytes are anything else (the
    /// general parser then decides).
    func scanFlatObject(_ buffer: UnsafeBufferPointer<UInt8>, into values: UnsafeMutableBufferPointer<Double>) -> Bool {
        values.update(repeating: .nan)
        return fieldBytes.withUnsafeBufferPointer { fields -> Bool in
            var position = 0
            let count = buffer.count
            @inline(__always) func skipSpace() {
                while position < count, buffer[position] == 0x20 || buffer[position] == 0x0A || buffer[position] == 0x0D || buffer[position] == 0x09 {
                    position += 1
                }
            }
            skipSpace()
            guard position < count, buffer[position] == UInt8(ascii: "{") else { return false }
            position += 1
            skipSpace()
            if position < count, buffer[position] == UInt8(ascii: "}") {
                position += 1
                skipSpace()
                return position == count
            }
            while true {
                guard position < count, buffer[position] == UInt8(ascii: "\"") else { return false }
                let keyStart = position + 1
                var keyEnd = keyStart
                while keyEnd < count, buffer[keyEnd] != UInt8(ascii: "\"") {
                    if buffer[keyEnd] == UInt8(ascii: "\\") { return false }
                    keyEnd += 1
                }
                guard keyEnd < count else { return false }
                position = keyEnd + 1
                skipSpace()
                guard position < count, buffer[position] == UInt8(ascii: ":") else { return false }
                position += 1
                skipSpace()
                guard position < count else { return false }
                let key = UnsafeBufferPointer(rebasing: buffer[keyStart..<keyEnd])
                let wanted = fields.firstIndex { $0.count == key.count && $0.elementsEqual(key) }
                switch buffer[position] {
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                    let start = position
                    while position < count, Self.isNumberByte(buffer[position]) { position += 1 }
                    guard let number = Self.number(UnsafeBufferPointer(rebasing: buffer[start..<position])) else { return false }
                    if let wanted { values[wanted] = number }
                case UInt8(ascii: "t"):
                    guard Self.matches(buffer, at: position, "true") else { return false }
                    position += 4
                    if let wanted { values[wanted] = 1 }
                case UInt8(ascii: "f"):
                    guard Self.matches(buffer, at: position, "false") else { return false }
                    position += 5
                    if let wanted { values[wanted] = 0 }
                case UInt8(ascii: "n"):
                    guard Self.matches(buffer, at: position, "null") else { return false }
                    position += 4
                case UInt8(ascii: "\""):
                    position += 1
                    while position < count, buffer[position] != UInt8(ascii: "\"") {
                        if buffer[position] == UInt8(ascii: "\\") { return false }
                        position += 1
                    }
                    guard position < count else { return false }
                    position += 1
                default:
                    return false
                }
                skipSpace()
                guard position < count else { return false }
                if buffer[position] == UInt8(ascii: ",") {
                    position += 1
                    skipSpace()
                    continue
                }
                guard buffer[position] == UInt8(ascii: "}") else { return false }
                position += 1
                skipSpace()
                return position == count
            }
        }
    }

    @inline(__always)
    private static func isNumberByte(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+")
            || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
    }

    private static func matches(_ buffer: UnsafeBufferPointer<UInt8>, at position: Int, _ word: StaticString) -> Bool {
        guard buffer.count - position >= word.utf8CodeUnitCount else { return false }
        for index in 0..<word.utf8CodeUnitCount where buffer[position + index] != word.utf8Start[index] { return false }
        return true
    }

    /// A JSON number's value, or `nil` when the bytes are not one JSON number or its magnitude is
    /// out of range.
    static func number(_ bytes: UnsafeBufferPointer<UInt8>) -> Double? {
        guard bytes.count < 64, isJSONNumber(bytes) else { return nil }
        let value = NumberText.double(UnsafeRawBufferPointer(bytes))
        return value.isFinite ? value : nil
    }

    /// Whether `bytes` follow JSON's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    private static func isJSONNumber(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var position = 0
        func isDigit(_ at: Int) -> Bool { at < bytes.count && bytes[at] >= UInt8(ascii: "0") && bytes[at] <= UInt8(ascii: "9") }
        func digits() -> Bool {
            guard isDigit(position) else { return false }
            while isDigit(position) { position += 1 }
            return true
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "-") { position += 1 }
        if position < bytes.count, bytes[position] == UInt8(ascii: "0") {
            position += 1
        } else if !digits() {
            return false
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard digits() else { return false }
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") { position += 1 }
            guard digits() else { return false }
        }
        return position == bytes.count
    }

    /// A structured-mode record (accepted for robustness; ingest writes binary mode).
    private func decodeStructured(_ record: ConsumedRecord, values: UnsafeMutableBufferPointer<Double>) -> Decoded {
        let event: CloudEvent
        do {
            event = try KafkaBinding.decode(KafkaBinding.Message(
                key: record.key, value: record.value,
                headers: record.headers.map { KafkaBinding.Header(name: $0.key, value: $0.value) }))
        } catch {
            return .invalid("not a CloudEvent: \(error)")
        }
        guard acceptsEveryType || acceptedType(Array(event.type.utf8)) != nil else { return .ignored }
        guard let entity = event.subject ?? record.key.map({ String(decoding: $0, as: UTF8.self) }), !entity.isEmpty else {
            return .invalid("no entity (subject or key)")
        }
        guard let time = event.time else { return .invalid("no time") }
        guard case .json(let data) = event.data else { return .invalid("data is not JSON") }
        return self.event(
            entity: entity, type: event.type, seconds: Double(time.seconds) + Double(time.nanoseconds) / 1e9, data: data,
            values: values)
    }

    private func event(
        entity: String, type: String, seconds: Double, data: JSONValue, values: UnsafeMutableBufferPointer<Double>
    ) -> Decoded {
        guard let object = data.objectValue else { return .invalid("data is not a JSON object") }
        values.update(repeating: .nan)
        for member in object {
            guard let index = fieldIndex[member.key] else { continue }
            switch member.value {
            case .int(let value): values[index] = Double(value)
            case .double(let value): values[index] = value
            case .bool(let value): values[index] = value ? 1 : 0
            default: continue
            }
        }
        return .event(entity: entity, key: Array(entity.utf8), time: seconds, type: type)
    }
}

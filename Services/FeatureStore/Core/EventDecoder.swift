import Contracts
import Features
import Kafka

/// Turns `loop.events` records (CloudEvents in Kafka binary mode) into ``FeatureEvent``s,
/// filtering by the `ce_type` header before the value is parsed.
struct EventDecoder: Sendable {
    /// What became of one record.
    enum Decoded {
        /// An event to apply to `entity`.
        case event(entity: String, FeatureEvent)
        /// A type no feature reads.
        case ignored
        /// A record that cannot be an event (no entity, time or JSON object data).
        case invalid(String)
    }

    private let acceptedTypes: Set<[UInt8]>
    private let acceptsEveryType: Bool
    private let fields: Set<String>

    init(schema: FeatureSchema) {
        var types = Set<[UInt8]>()
        var everyType = false
        var fields = Set<String>()
        for feature in schema.features {
            if feature.eventTypes.isEmpty { everyType = true }
            for type in feature.eventTypes { types.insert(Array(type.utf8)) }
            if let field = feature.field { fields.insert(field) }
        }
        acceptedTypes = types
        acceptsEveryType = everyType
        self.fields = fields
    }

    func decode(_ record: ConsumedRecord) -> Decoded {
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
                return decodeStructured(record)
            }
            return .invalid("no ce_type header")
        }
        guard acceptsEveryType || acceptedTypes.contains(typeBytes) else { return .ignored }
        guard let entityBytes = record.key ?? subjectBytes, !entityBytes.isEmpty else { return .invalid("no entity (key or ce_subject)") }
        guard let timeBytes else { return .invalid("no ce_time header") }
        let time: Timestamp
        do {
            time = try Timestamp(rfc3339: String(decoding: timeBytes, as: UTF8.self))
        } catch {
            return .invalid("ce_time is not an RFC 3339 time")
        }
        let data: JSONValue
        do {
            data = try JSONValue.parse(record.value ?? [])
        } catch {
            return .invalid("the value is not JSON: \(error)")
        }
        return event(
            entity: String(decoding: entityBytes, as: UTF8.self), type: String(decoding: typeBytes, as: UTF8.self),
            time: time, data: data)
    }

    /// A structured-mode record (accepted for robustness; ingest writes binary mode).
    private func decodeStructured(_ record: ConsumedRecord) -> Decoded {
        let event: CloudEvent
        do {
            event = try KafkaBinding.decode(KafkaBinding.Message(
                key: record.key, value: record.value,
                headers: record.headers.map { KafkaBinding.Header(name: $0.key, value: $0.value) }))
        } catch {
            return .invalid("not a CloudEvent: \(error)")
        }
        guard acceptsEveryType || acceptedTypes.contains(Array(event.type.utf8)) else { return .ignored }
        guard let entity = event.subject ?? record.key.map({ String(decoding: $0, as: UTF8.self) }), !entity.isEmpty else {
            return .invalid("no entity (subject or key)")
        }
        guard let time = event.time else { return .invalid("no time") }
        guard case .json(let data) = event.data else { return .invalid("data is not JSON") }
        return self.event(entity: entity, type: event.type, time: time, data: data)
    }

    private func event(entity: String, type: String, time: Timestamp, data: JSONValue) -> Decoded {
        guard let object = data.objectValue else { return .invalid("data is not a JSON object") }
        var values: [String: Double] = [:]
        for member in object where fields.contains(member.key) {
            switch member.value {
            case .int(let value): values[member.key] = Double(value)
            case .double(let value): values[member.key] = value
            case .bool(let value): values[member.key] = value ? 1 : 0
            default: continue
            }
        }
        let seconds = Double(time.seconds) + Double(time.nanoseconds) / 1e9
        return .event(entity: entity, FeatureEvent(time: seconds, type: type, values: values))
    }
}

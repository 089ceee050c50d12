import Contracts
import Foundation
import Kafka

/// Turns a record of any FeedbackLoop topic into one JSON object for `loopctl tail`: where it is
/// (topic, partition, offset, key, timestamp) and what it holds, decoded by the topic's contract.
public enum RecordDecoder {
    /// How a topic's values are decoded.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// CloudEvents (binary or structured mode): `loop.events.raw`, `loop.events`.
        case event
        /// ``DeadLetter``: `loop.events.dlq`.
        case deadLetter = "dead-letter"
        /// ``EntityFeatureState`` bytes: `loop.features` (shown as size and base64).
        case features
        /// ``Prediction``: `loop.predictions`.
        case prediction
        /// ``LabeledExample``: `loop.labeled`.
        case labeled
        /// ``MonitoringRecord``: `loop.monitoring`.
        case monitoring
        /// ``ModelVersionRecord`` or ``RegistryState`` by key: `loop.models`.
        case model
        /// ``AuditEntry``: `loop.audit`.
        case audit
        /// UTF-8 text or base64.
        case raw
    }

    /// The kind of `topic` judged by its name's suffix (`<prefix>.events.dlq` → dead letter, …).
    public static func kind(ofTopic topic: String) -> Kind {
        let suffixes: [(String, Kind)] = [
            (".events.raw", .event), (".events.dlq", .deadLetter), (".events", .event), (".features", .features),
            (".predictions", .prediction), (".labeled", .labeled), (".monitoring", .monitoring), (".models", .model),
            (".audit", .audit),
        ]
        for (suffix, kind) in suffixes where topic.hasSuffix(suffix) || topic == String(suffix.dropFirst()) {
            return kind
        }
        return .raw
    }

    /// The JSON line for `record`: `{topic, partition, offset, key, timestamp, <kind>: value}`, or
    /// `{…, error, raw}` when the value does not decode as `kind`.
    public static func json(_ record: ConsumedRecord, as kind: Kind) -> JSONValue {
        var object: JSONObject = [
            "topic": .string(record.topic), "partition": .int(Int64(record.partition)), "offset": .int(record.offset),
            "key": JSONValue(record.key.map(text)),
        ]
        if let timestamp = record.timestamp { object["timestamp"] = .string(Timestamp(date: timestamp).text) }
        do {
            let (name, value) = try decode(record, as: kind)
            object[name] = value
        } catch {
            object["error"] = .string(error.reason)
            object["raw"] = JSONValue(record.value.map(text))
        }
        return .object(object)
    }

    /// The decoded value and the member name it goes under.
    static func decode(_ record: ConsumedRecord, as kind: Kind) throws(LoopctlError) -> (String, JSONValue) {
        guard let value = record.value else { return ("tombstone", .bool(true)) }
        func read<R: TopicRecord>(_: R.Type) throws(LoopctlError) -> JSONValue {
            do { return try R(bytes: value).json } catch { throw LoopctlError(.badRecord, error.description) }
        }
        switch kind {
        case .event:
            let message = KafkaBinding.Message(
                key: record.key, value: value, headers: record.headers.map { KafkaBinding.Header(name: $0.key, value: $0.value) })
            do { return ("event", JSONFormat.jsonValue(of: try KafkaBinding.decode(message))) } catch {
                throw LoopctlError(.badRecord, "not a CloudEvent: \(error)")
            }
        case .deadLetter: return ("deadLetter", try read(DeadLetter.self))
        case .prediction: return ("prediction", try read(Prediction.self))
        case .labeled: return ("labeled", try read(LabeledExample.self))
        case .monitoring: return ("monitoring", try read(MonitoringRecord.self))
        case .audit: return ("audit", try read(AuditEntry.self))
        case .model:
            if record.key.map(text) == RegistryState.key { return ("registry", try read(RegistryState.self)) }
            return ("model", try read(ModelVersionRecord.self))
        case .features:
            return ("features", ["bytes": .int(Int64(value.count)), "base64": .string(Data(value).base64EncodedString())])
        case .raw:
            return ("value", .string(text(value)))
        }
    }

    /// UTF-8 text when valid, otherwise `base64:<…>`.
    static func text(_ bytes: [UInt8]) -> String {
        String(validating: bytes, as: UTF8.self) ?? "base64:" + Data(bytes).base64EncodedString()
    }
}

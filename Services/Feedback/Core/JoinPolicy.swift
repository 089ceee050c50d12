import Contracts
import Foundation
import Kafka

/// How predictions and outcomes are joined, from `loop.yaml` and the service's settings; validated once.
public struct JoinPolicy: Sendable, Equatable {
    /// Event time a prediction waits for its outcome (`feedback.joinDeadline`), in milliseconds.
    public var deadlineMs: Int64
    /// The label given at the deadline (`feedback.defaultLabel`); `nil` counts the prediction as unlabeled.
    public var defaultLabel: Bool?
    /// Event time a resolved prediction is kept after its deadline, so late and duplicate outcomes
    /// are recognised (and late ones still emitted), in milliseconds.
    public var retentionMs: Int64
    /// The label value (as text) of the positive class (`label.positive`).
    public var positiveLabel: String
    /// The outcome field holding the business value, besides `value`.
    public var valueField: String?

    /// A policy from its parts; throws for a non-positive deadline or a negative retention.
    public init(
        deadlineMs: Int64, defaultLabel: Bool? = nil, retentionMs: Int64, positiveLabel: String, valueField: String? = nil
    ) throws(FeedbackError) {
        guard deadlineMs > 0 else {
            throw FeedbackError(.invalidConfiguration, "feedback.joinDeadline must be positive, not \(deadlineMs) ms")
        }
        guard retentionMs >= 0 else {
            throw FeedbackError(.invalidConfiguration, "the late-outcome retention must not be negative, not \(retentionMs) ms")
        }
        self.deadlineMs = deadlineMs
        self.defaultLabel = defaultLabel
        self.retentionMs = retentionMs
        self.positiveLabel = positiveLabel
        self.valueField = valueField
    }

    /// The policy `loop.yaml` describes, keeping resolved predictions `retentionSeconds` past their deadline.
    public init(config: LoopConfig, retentionSeconds: Double) throws(FeedbackError) {
        let positive = config.label.positive
        try self.init(
            deadlineMs: Int64(config.feedback.joinDeadline.seconds * 1000),
            defaultLabel: config.feedback.defaultLabel.map { $0 == positive },
            retentionMs: Int64(retentionSeconds * 1000), positiveLabel: positive, valueField: config.label.valueField)
    }

    /// Whether an outcome's `label` value is the positive class: a string or number equal to
    /// `label.positive` in its text form, or `true`.
    public func isPositive(_ label: JSONValue) -> Bool? {
        switch label {
        case .bool(let flag): return flag
        case .string(let text): return text == positiveLabel
        case .int, .double: return label.canonicalString == positiveLabel
        default: return nil
        }
    }
}

/// Ground truth for one prediction: an outcome event or a human review verdict.
public struct Outcome: Sendable, Hashable {
    public var requestId: String
    public var label: Bool
    /// The outcome's event time, milliseconds since the epoch.
    public var eventTimeMs: Int64
    /// The business value it carried.
    public var value: Double?
    /// `outcome` or `review`.
    public var source: LabelSource
    /// The reviewer, for a review.
    public var reviewer: String?

    public init(requestId: String, label: Bool, eventTimeMs: Int64, value: Double? = nil, source: LabelSource = .outcome, reviewer: String? = nil) {
        self.requestId = requestId
        self.label = label
        self.eventTimeMs = eventTimeMs
        self.value = value
        self.source = source
        self.reviewer = reviewer
    }
}

/// One consumed record as the join sees it.
public enum JoinInput: Sendable {
    case prediction(ServedPrediction)
    case outcome(Outcome)
    /// Another event on `loop.events`: it only moves the partition's event-time clock.
    case clock(eventTimeMs: Int64)
    /// A record that does not follow its contract; counted, never fatal.
    case malformed(reason: String, eventTimeMs: Int64?)
    /// A record without an event time (no `ce_time`): skipped.
    case ignored

    /// A full prediction record as a join input (its canonical bytes are what the join keeps).
    public static func prediction(_ prediction: Prediction) -> JoinInput {
        // Canonical bytes of a record this build wrote always read back.
        .prediction(try! ServedPrediction(bytes: prediction.bytes))
    }
}

/// A decoded input and where it came from.
public struct InputRecord: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var input: JoinInput

    public init(topic: String, partition: Int32, offset: Int64, input: JoinInput) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.input = input
    }
}

/// Turns consumed records of `loop.predictions` and `loop.events` into ``JoinInput``s, filtering
/// events by their `ce_type` header before parsing anything.
public struct InputDecoder: Sendable {
    public let predictionsTopic: String
    public let policy: JoinPolicy

    /// `policy.positiveLabel` and `policy.valueField` as UTF-8, for the outcome fast path (which is
    /// off for a non-ASCII positive label: String equality is canonical equivalence, not bytes).
    private let positiveLabelBytes: [UInt8]?
    private let valueFieldBytes: [UInt8]?

    public init(predictionsTopic: String, policy: JoinPolicy) {
        self.predictionsTopic = predictionsTopic
        self.policy = policy
        positiveLabelBytes = policy.positiveLabel.utf8.allSatisfy { $0 < 0x80 } ? Array(policy.positiveLabel.utf8) : nil
        valueFieldBytes = policy.valueField.map { Array($0.utf8) }
    }

    /// Decodes a batch; predictions sharing a feature layout share one array of names.
    public func decode(_ records: [ConsumedRecord]) -> [InputRecord] {
        var names = FeatureNameCache()
        var inputs: [InputRecord] = []
        inputs.reserveCapacity(records.count)
        // Each record is read where it lies: binding it (as `map` does), or passing it on, copied all its fields.
        records.withUnsafeBufferPointer { records in
            for index in records.indices {
                let record = records.baseAddress! + index
                inputs.append(InputRecord(
                    topic: record.pointee.topic, partition: record.pointee.partition, offset: record.pointee.offset,
                    input: decode(record, names: &names)))
            }
        }
        return inputs
    }

    /// Decodes one record.
    public func decode(_ record: ConsumedRecord) -> JoinInput {
        var names = FeatureNameCache()
        return withUnsafePointer(to: record) { record in decode(record, names: &names) }
    }

    static let outcomeType = Array(EventType.outcome.description.utf8)
    static let structuredPrefix = Array("application/cloudevents".utf8)

    /// Whether `bytes` are `text`'s UTF-8 (header names are compared this way, without building,
    /// hashing or generically comparing strings).
    @inline(__always)
    private static func equals(_ bytes: UnsafeBufferPointer<UInt8>, _ text: StaticString) -> Bool {
        bytes.count == text.utf8CodeUnitCount && memcmp(bytes.baseAddress!, text.utf8Start, bytes.count) == 0
    }

    /// Decodes one record: a prediction straight from its bytes; an event by its `ce_type` header,
    /// then (outcomes and reviews only) binary mode straight from the `ce_time` header and the JSON
    /// value, structured mode through ``KafkaBinding``. The record's fields are read through the
    /// pointer, each when needed.
    func decode(_ record: UnsafePointer<ConsumedRecord>, names: inout FeatureNameCache) -> JoinInput {
        if record.pointee.topic == predictionsTopic {
            guard let value = record.pointee.value else { return .malformed(reason: "prediction without a value", eventTimeMs: nil) }
            do {
                return .prediction(try ServedPrediction(bytes: value, names: &names))
            } catch {
                return .malformed(reason: error.description, eventTimeMs: nil)
            }
        }
        // The headers the decoding needs, found by position: only their values are taken from the record.
        var typeHeader: Int?
        var timeHeader: Int?
        var idHeader: Int?
        var structured = false
        record.pointee.headers.withUnsafeBufferPointer { headers in
            for index in headers.indices {
                var key = headers[index].key
                key.withUTF8 { key in
                    if Self.equals(key, "ce_type") {
                        typeHeader = index
                    } else if Self.equals(key, "ce_time") {
                        timeHeader = index
                    } else if Self.equals(key, "ce_id") {
                        idHeader = index
                    } else if Self.equals(key, "content-type") {
                        structured = headers[index].value?.starts(with: Self.structuredPrefix) ?? false
                    }
                }
            }
        }
        if structured { return decodeStructured(record.pointee) }
        let typeBytes = typeHeader.flatMap { record.pointee.headers[$0].value }
        let timeBytes = timeHeader.flatMap { record.pointee.headers[$0].value }
        let idBytes = idHeader.flatMap { record.pointee.headers[$0].value }
        let kind: EventKind
        if let typeBytes, typeBytes == Self.outcomeType {
            kind = .outcome
        } else if let type = typeBytes.flatMap({ EventType(String(decoding: $0, as: UTF8.self)) }), type.isAccepted,
                  type.kind == .outcome || type.kind == .review {
            kind = type.kind
        } else {
            guard let timeBytes, let eventTimeMs = try? Timestamp.epochMilliseconds(rfc3339: timeBytes) else { return .ignored }
            return .clock(eventTimeMs: eventTimeMs)
        }
        // The event's id names it in reasons; built only off the fast path.
        var id: String { idBytes.map { String(decoding: $0, as: UTF8.self) } ?? "\(record.pointee.topic)[\(record.pointee.partition)]@\(record.pointee.offset)" }
        let typeName = kind == .review ? "review" : "outcome"
        guard let timeBytes, let time = try? Timestamp.epochMilliseconds(rfc3339: timeBytes) else {
            return .malformed(reason: "\(typeName) \(id) has no valid time", eventTimeMs: nil)
        }
        if kind == .outcome, let value = record.pointee.value, let positive = positiveLabelBytes,
           let fields = outcomeFields(value, positiveLabel: positive) {
            return .outcome(Outcome(requestId: fields.requestId, label: fields.label, eventTimeMs: time, value: fields.value))
        }
        guard let value = record.pointee.value, case .object(let data)? = try? JSONValue.parse(value) else {
            return .malformed(reason: "\(typeName) \(id) has no JSON object data", eventTimeMs: time)
        }
        return outcome(data: data, eventTimeMs: time, kind: kind, id: id)
    }

    /// An outcome's data read straight from its bytes, when it is plain (see
    /// ``RecordScanner/readOutcome(valueField:)``); `nil` sends it to the general path.
    private func outcomeFields(_ value: [UInt8], positiveLabel: [UInt8]) -> (requestId: String, label: Bool, value: Double?)? {
        let fields = value.withUnsafeBytes { buffer in
            var scanner = RecordScanner(buffer)
            return scanner.readOutcome(valueField: valueFieldBytes)
        }
        guard let fields else { return nil }
        let label = value.withUnsafeBytes { buffer -> Bool in
            let token = UnsafeRawBufferPointer(rebasing: buffer[fields.label])
            if fields.labelIsString { return token.elementsEqual(positiveLabel) }
            return token.count == 4
        }
        return (fields.requestId, label, fields.value)
    }

    private func decodeStructured(_ record: ConsumedRecord) -> JoinInput {
        let message = KafkaBinding.Message(
            key: record.key, value: record.value,
            headers: record.headers.map { KafkaBinding.Header(name: $0.key, value: $0.value) })
        let event: CloudEvent
        do {
            event = try KafkaBinding.decode(message)
        } catch {
            return .malformed(reason: "\(error)", eventTimeMs: nil)
        }
        guard let type = EventType(event.type), type.isAccepted, type.kind == .outcome || type.kind == .review else {
            return event.time.map { .clock(eventTimeMs: $0.epochMilliseconds) } ?? .ignored
        }
        return outcome(from: event, kind: type.kind)
    }

    /// The outcome an outcome or review event carries.
    public func outcome(from event: CloudEvent, kind: EventKind) -> JoinInput {
        guard let time = event.time?.epochMilliseconds else {
            return .malformed(reason: "\(event.type) \(event.id) has no time", eventTimeMs: nil)
        }
        guard case .json(.object(let data))? = event.data else {
            return .malformed(reason: "\(event.type) \(event.id) has no requestId", eventTimeMs: time)
        }
        return outcome(data: data, eventTimeMs: time, kind: kind, id: event.id)
    }

    private func outcome(data: JSONObject, eventTimeMs time: Int64, kind: EventKind, id: String) -> JoinInput {
        let typeName = kind == .review ? "review" : "outcome"
        guard let requestId = data[PayloadField.requestId]?.stringValue else {
            return .malformed(reason: "\(typeName) \(id) has no requestId", eventTimeMs: time)
        }
        guard let labelValue = data[PayloadField.label], let label = policy.isPositive(labelValue) else {
            return .malformed(reason: "\(typeName) \(id) has no usable label", eventTimeMs: time)
        }
        let value = data[PayloadField.value]?.doubleValue ?? policy.valueField.flatMap { data[$0]?.doubleValue }
        let reviewer = kind == .review ? data[PayloadField.reviewer]?.stringValue : nil
        return .outcome(Outcome(
            requestId: requestId, label: label, eventTimeMs: time, value: value,
            source: kind == .review ? .review : .outcome, reviewer: reviewer))
    }
}

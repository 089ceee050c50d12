import Contracts
import Foundation
import Kafka

/// Where a raw Kafka record sits, so a replay after a crash can tell it was already dead-lettered.
public struct SourcePosition: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
}

/// One input after validation: an event to write to `loop.events`, or its dead letter.
public enum WriteItem: Sendable {
    case event(ValidatedEvent)
    case rejected(Rejection, deadLetter: OutgoingRecord, position: SourcePosition?)
}

/// What became of one input.
public enum EventOutcome: Sendable, Hashable {
    /// Written to `loop.events`.
    case accepted
    /// Its `(source, id)` was seen within the dedupe horizon; counted, not written again.
    case duplicate
    /// Written to `loop.events.dlq` with this reason.
    case rejected(Rejection)
}

/// Turns raw input (Kafka records, HTTP messages) into ``WriteItem``s: decode, validate, redact,
/// and for rejects build the dead-letter record. Pure and `Sendable`: callers run it on their own
/// task, in parallel with the writer.
public struct Intake: Sendable {
    public let validator: EventValidator
    let deadLetterTopic: String
    /// Binary-mode records in the common shape, validated straight from their bytes.
    let fastPath: FastPath?

    public init(validator: EventValidator, deadLetterTopic: String) {
        self.validator = validator
        self.deadLetterTopic = deadLetterTopic
        fastPath = FastPath(validator: validator)
    }

    // MARK: - Kafka

    /// Validates a batch of raw records (binary or structured mode).
    public func items(from records: some Collection<ConsumedRecord>, now: Date = Date()) -> [WriteItem] {
        let ingestTime = Timestamp(date: now)
        let rejectedAtMs = Int64(now.timeIntervalSince1970 * 1000)
        let ingestTimeBytes = Array(ingestTime.text.utf8)
        var traces = TraceGenerator()
        var items: [WriteItem] = []
        items.reserveCapacity(records.count)
        for record in records {
            let size = record.value?.count ?? 0
            let result: Result<ValidatedEvent, Rejection>
            if let tooLarge = validator.checkSize(size) {
                result = .failure(tooLarge)
            } else if let event = fastPath?.validate(record, ingestTime: ingestTimeBytes, traces: &traces) {
                result = .success(event)
            } else {
                let message = KafkaBinding.Message(
                    key: record.key, value: record.value,
                    headers: record.headers.map { KafkaBinding.Header(name: $0.key, value: $0.value) })
                do throws(CloudEventError) {
                    let event = try KafkaBinding.decode(message)
                    result = validator.validate(event, size: size, ingestTime: ingestTime, traces: &traces)
                } catch {
                    result = .failure(Rejection(error))
                }
            }
            switch result {
            case .success(let event): items.append(.event(event))
            case .failure(let rejection):
                let position = SourcePosition(topic: record.topic, partition: record.partition, offset: record.offset)
                let letter = DeadLetter(
                    reason: rejection.reason.rawValue, field: rejection.field, message: rejection.message, origin: "kafka",
                    topic: record.topic, partition: Int64(record.partition), offset: record.offset,
                    body: "", bodyEncoding: "utf8",
                    headers: Self.headerTexts(record.headers.map { ($0.key, $0.value ?? []) }), rejectedAtMs: rejectedAtMs)
                items.append(.rejected(
                    rejection, deadLetter: deadLetterRecord(letter, body: record.value ?? [], key: record.key),
                    position: position))
            }
        }
        return items
    }

    // MARK: - HTTP

    /// A refusal of a whole HTTP request body (400): it is not what its content type says. Its dead
    /// letter is written too.
    public struct BodyRejection: Error, Sendable {
        public var rejection: Rejection
        public var deadLetter: OutgoingRecord
    }

    /// What an HTTP request carried.
    public enum HTTPPayload: Sendable {
        case single(WriteItem, id: String?)
        case batch([(item: WriteItem, id: String?)])
    }

    /// Decodes and validates an HTTP request in structured, batch or binary mode. Batches with more
    /// than `maxBatch` events are refused as too large.
    public func items(
        httpHeaders headers: [(name: String, value: String)], body: [UInt8], peer: String?, maxBatch: Int, now: Date = Date()
    ) -> Result<HTTPPayload, BodyRejection> {
        let ingestTime = Timestamp(date: now)
        let rejectedAtMs = Int64(now.timeIntervalSince1970 * 1000)
        var traces = TraceGenerator()
        let headerTexts = Dictionary(headers.map { ($0.name.lowercased(), $0.value) }, uniquingKeysWith: { first, _ in first })
        func deadLetter(_ rejection: Rejection, body: [UInt8]) -> OutgoingRecord {
            let letter = DeadLetter(
                reason: rejection.reason.rawValue, field: rejection.field, message: rejection.message, origin: "http",
                peer: peer, body: "", bodyEncoding: "utf8", headers: headerTexts, rejectedAtMs: rejectedAtMs)
            return deadLetterRecord(letter, body: body, key: nil)
        }
        func refuse(_ rejection: Rejection) -> Result<HTTPPayload, BodyRejection> {
            .failure(BodyRejection(rejection: rejection, deadLetter: deadLetter(rejection, body: body)))
        }

        let contentType = headerTexts["content-type"].map(MediaType.essence)
        if contentType == JSONFormat.batchMediaType {
            func general(_ element: JSONValue, at index: Int) -> (item: WriteItem, id: String?) {
                let bytes = element.canonicalBytes()
                let id = element["id"]?.stringValue
                let result: Result<ValidatedEvent, Rejection>
                if let tooLarge = validator.checkSize(bytes.count) {
                    result = .failure(tooLarge)
                } else {
                    do throws(CloudEventError) {
                        let event = try JSONFormat.decode(element)
                        result = validator.validate(event, size: bytes.count, ingestTime: ingestTime, traces: &traces)
                    } catch {
                        result = .failure(Rejection(error))
                    }
                }
                switch result {
                case .success(let event): return (.event(event), id)
                case .failure(var rejection):
                    rejection.message = "event [\(index)]: " + rejection.message
                    return (.rejected(rejection, deadLetter: deadLetter(rejection, body: bytes), position: nil), id)
                }
            }
            // Common batches: delimit the elements without a JSON tree and validate each straight
            // from its bytes; an element the fast path cannot prove valid is parsed on its own. If
            // an element does not parse, neither does the body: the whole-body parse below answers.
            if let fastPath {
                let items = body.withUnsafeBytes { bytes -> [(item: WriteItem, id: String?)]? in
                    guard let ranges = FastPath.elements(ofBatch: bytes), ranges.count <= maxBatch else { return nil }
                    let ingestTimeBytes = Array(ingestTime.text.utf8)
                    var items: [(item: WriteItem, id: String?)] = []
                    items.reserveCapacity(ranges.count)
                    for (index, range) in ranges.enumerated() {
                        let element = UnsafeRawBufferPointer(rebasing: bytes[range])
                        if element.count <= validator.config.events.maxPayloadBytes,
                           let event = fastPath.validate(structured: element, ingestTime: ingestTimeBytes, traces: &traces) {
                            items.append((.event(event), event.id))
                        } else if let parsed = Self.parseElement(element) {
                            items.append(general(parsed, at: index))
                        } else {
                            return nil
                        }
                    }
                    return items
                }
                if let items { return .success(.batch(items)) }
            }
            let parsed: JSONValue
            do { parsed = try JSONValue.parse(body) } catch {
                return refuse(Rejection(.malformed, field: nil, "the batch is not valid JSON: \(error)"))
            }
            guard case .array(let elements) = parsed else {
                return refuse(Rejection(.malformed, field: nil, "a batch must be a JSON array, found \(parsed.typeName)"))
            }
            guard elements.count <= maxBatch else {
                return refuse(Rejection(.tooLarge, field: nil, "the batch has \(elements.count) events, over the limit of \(maxBatch)"))
            }
            return .success(.batch(elements.enumerated().map { general($1, at: $0) }))
        }

        if let tooLarge = validator.checkSize(body.count) { return refuse(tooLarge) }
        let event: CloudEvent
        do throws(CloudEventError) {
            switch try HTTPBinding.decode(HTTPBinding.Message(headers: headers, body: body)) {
            case .single(let decoded): event = decoded
            case .batch: return refuse(Rejection(.unsupportedContentType, field: "Content-Type", "unexpected batch"))
            }
        } catch {
            return refuse(Rejection(error))
        }
        switch validator.validate(event, size: body.count, ingestTime: ingestTime, traces: &traces) {
        case .success(let validated): return .success(.single(.event(validated), id: event.id))
        case .failure(let rejection):
            return .success(.single(.rejected(rejection, deadLetter: deadLetter(rejection, body: body), position: nil), id: event.id))
        }
    }

    /// One batch element parsed as it would be inside the batch (wrapped in an array, so limits
    /// on nesting apply the same), or `nil` if it does not parse.
    private static func parseElement(_ element: UnsafeRawBufferPointer) -> JSONValue? {
        var wrapped: [UInt8] = []
        wrapped.reserveCapacity(element.count + 2)
        wrapped.append(UInt8(ascii: "["))
        wrapped += element
        wrapped.append(UInt8(ascii: "]"))
        guard case .array(let values)? = try? JSONValue.parse(wrapped), values.count == 1 else { return nil }
        return values[0]
    }

    // MARK: - Dead letters

    /// The dead-letter record for `letter` with the original `body`, PII fields redacted when the
    /// body is a JSON event or JSON data.
    func deadLetterRecord(_ letter: DeadLetter, body: [UInt8], key: [UInt8]?) -> OutgoingRecord {
        var letter = letter
        var bytes = body
        if validator.hasPII, let redacted = redactedBody(body) { bytes = redacted }
        if let text = String(validating: bytes, as: UTF8.self) {
            letter.body = text
            letter.bodyEncoding = "utf8"
        } else {
            letter.body = Data(bytes).base64EncodedString()
            letter.bodyEncoding = "base64"
        }
        return OutgoingRecord(topic: deadLetterTopic, key: key, value: letter.bytes)
    }

    /// The body with PII fields dropped or hashed, if it is JSON and held any.
    private func redactedBody(_ body: [UInt8]) -> [UInt8]? {
        guard let value = try? JSONValue.parse(body), case .object(var object) = value else { return nil }
        if object["specversion"] != nil {
            guard case .object(let data)? = object["data"] else { return nil }
            let (redacted, changed) = validator.redact(data)
            guard changed else { return nil }
            object["data"] = .object(redacted)
            return JSONValue.object(object).canonicalBytes()
        }
        let (redacted, changed) = validator.redact(object)
        return changed ? JSONValue.object(redacted).canonicalBytes() : nil
    }

    /// Header values as UTF-8 text, or base64 when they are not UTF-8.
    static func headerTexts(_ headers: [(String, [UInt8])]) -> [String: String] {
        var texts: [String: String] = [:]
        for (name, value) in headers where texts[name] == nil {
            texts[name] = String(validating: value, as: UTF8.self) ?? Data(value).base64EncodedString()
        }
        return texts
    }
}

import Contracts
import Foundation
@testable import Ingest
import Kafka
import Testing

/// The structured-mode fast path and the HTTP batch path against the general path
/// (JSONFormat + EventValidator): for every element it accepts the `loop.events` record must be
/// byte-identical, everything else it must leave to the general path, and a batch's answer must be
/// the canonical JSON of its results. No broker needed.
@Suite struct BatchPathTests {
    let validator: EventValidator
    let intake: Intake
    static let now = Date(timeIntervalSince1970: 1_714_557_600.25)
    static let data = #"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"operator":"alice@example.com","period":0.25}"#

    init() throws {
        let yaml = try String(contentsOf: packageRoot.appendingPathComponent("examples/elec2/loop.yaml"), encoding: .utf8)
        let config = try LoopConfig.parse(yaml: yaml, file: "loop.yaml")
        validator = try EventValidator(config: config, piiKey: Array(Deployment.piiKey.utf8))
        intake = Intake(validator: validator, deadLetterTopic: "dlq")
    }

    static func event(_ members: String = #""id":"e-1","source":"/tests","type":"loop.observation.v1","subject":"NSW","time":"2024-05-01T10:00:00Z""#, data: String = data) -> String {
        #"{"specversion":"1.0",\#(members),"data":\#(data)}"#
    }

    /// What the general path makes of one structured event.
    func general(_ text: String) -> Result<ValidatedEvent, Rejection> {
        var traces = TraceGenerator()
        guard let element = try? JSONValue.parse(Array(text.utf8)) else { return .failure(Rejection(.malformed, field: nil, "not JSON")) }
        do throws(CloudEventError) {
            let event = try JSONFormat.decode(element)
            return validator.validate(event, size: element.canonicalBytes().count, ingestTime: Timestamp(date: Self.now), traces: &traces)
        } catch {
            return .failure(Rejection(error))
        }
    }

    func fast(_ text: String) -> ValidatedEvent? {
        var traces = TraceGenerator()
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes {
            intake.fastPath?.validate(structured: $0, ingestTime: Array(Timestamp(date: Self.now).text.utf8), traces: &traces)
        }
    }

    /// Equal records, the generated `traceparent` aside (both are random when none came in).
    static func same(_ left: ValidatedEvent, _ right: ValidatedEvent, traceGiven: Bool) -> Bool {
        func headers(_ event: ValidatedEvent) -> [KafkaHeader] {
            traceGiven ? event.record.headers : event.record.headers.filter { $0.key != "ce_traceparent" }
        }
        return left.dedupeHash == right.dedupeHash && left.id == right.id && left.kind == right.kind
            && left.record.topic == right.record.topic && left.record.key == right.record.key
            && left.record.value == right.record.value && headers(left) == headers(right)
    }

    @Test("structured events in the common shape give the general path's exact record", arguments: [
        event(),
        // Members in another order, whitespace, datacontenttype, a traceparent, an old ingesttime.
        "{ \"data\" : { \"period\": 0.25, \"dow\":3, \"nswprice\" : 1, \"nswdemand\":0.4 },\n \"time\":\"2024-05-01T10:00:00.5+02:00\", "
            + "\"subject\":\"NSW\", \"type\":\"loop.observation.v1\", \"source\":\"urn:x:1\", \"id\":\"e 2\", \"specversion\":\"1.0\", "
            + "\"datacontenttype\":\"application/json\", \"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\", "
            + "\"ingesttime\":\"2020-01-01T00:00:00Z\" }",
        event(#""id":"r","source":"/s","type":"loop.outcome.v1","subject":"NSW","time":"2024-05-01T10:00:00Z""#,
              data: #"{"label":"1","requestId":"r-1","value":12.5}"#),
    ])
    func accepted(_ text: String) throws {
        let expected = try general(text).get()
        let actual = try #require(fast(text))
        #expect(Self.same(actual, expected, traceGiven: text.contains("traceparent")))
        #expect(!String(decoding: actual.record.value ?? [], as: UTF8.self).contains("alice"))
        let trace = try #require(actual.record.headers.first { $0.key == "ce_traceparent" }?.value)
        #expect(TraceGenerator.isValid(trace))
    }

    @Test("structured events outside the common shape are left to the general path", arguments: [
        // Valid, but not provably so here: an extension, an escaped string, a non-JSON content type, dataschema.
        (event(#""id":"e","source":"/s","type":"loop.observation.v1","subject":"NSW","time":"2024-05-01T10:00:00Z","tenant":"a""#), true),
        (event(#""id":"e\"1","source":"/s","type":"loop.observation.v1","subject":"NSW","time":"2024-05-01T10:00:00Z""#), true),
        (event(#""id":"e","source":"/s","type":"loop.observation.v1","subject":"NSW","time":"2024-05-01T10:00:00Z","dataschema":"urn:s""#), true),
        // Invalid: duplicate member, missing subject, bad time, wrong specversion, data not an object, bad field.
        (#"{"specversion":"1.0","id":"e","id":"f","source":"/s","type":"loop.observation.v1","subject":"NSW","time":"2024-05-01T10:00:00Z","data":{}}"#, false),
        (event(#""id":"e","source":"/s","type":"loop.observation.v1","time":"2024-05-01T10:00:00Z""#), false),
        (event(#""id":"e","source":"/s","type":"loop.observation.v1","subject":"NSW","time":"2024-05-01 10:00:00Z""#), false),
        (#"{"specversion":"0.3","id":"e","source":"/s","type":"loop.observation.v1","subject":"NSW","time":"2024-05-01T10:00:00Z","data":{}}"#, false),
        (event(data: "[1]"), false),
        (event(data: #"{"dow":3,"nswdemand":0.4,"nswprice":1.5,"period":0.25}"#), false),
        (event(data: #"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"period":0.25,"extra":{"a":1}}"#), false),
    ])
    func leftToTheGeneralPath(_ text: String, _ valid: Bool) {
        #expect(fast(text) == nil)
        let accepted = if case .success = general(text) { true } else { false }
        #expect(accepted == valid)
    }

    @Test("a batch gives, element by element, what the general path gives; its answer is canonical JSON")
    func batch() throws {
        let elements = [
            Self.event(),
            Self.event(#""id":"e-2","source":"/s","type":"loop.observation.v1","subject":"NSW","time":"2024-05-01T10:00:00Z","tenant":"a""#),
            Self.event(#""id":"e-3","source":"/s","type":"loop.observation.v1","subject":"NSW","time":"2024-05-01T10:00:00Z""#,
                       data: #"{"dow":3,"nswdemand":0.4,"nswprice":1.5,"period":0.25}"#),
            #"{"id":"e-4"}"#,
        ]
        let body = Array(("[" + elements.joined(separator: ", ") + "]").utf8)
        let headers = [(name: "Content-Type", value: "application/cloudevents-batch+json")]
        guard case .success(.batch(let items)) = intake.items(httpHeaders: headers, body: body, peer: nil, maxBatch: 10, now: Self.now) else {
            Issue.record("the batch was refused")
            return
        }
        #expect(items.map(\.id) == ["e-1", "e-2", "e-3", "e-4"])
        for (index, (item, text)) in zip(items.map(\.item), elements).enumerated() {
            switch (item, general(text)) {
            case (.event(let actual), .success(let expected)):
                #expect(Self.same(actual, expected, traceGiven: false), "element \(index)")
            case (.rejected(let actual, _, _), .failure(let expected)):
                #expect(actual.reason == expected.reason && actual.message == "event [\(index)]: " + expected.message)
            default: Issue.record("element \(index): the batch path and the general path disagree")
            }
        }

        // Over the count limit, and not an array of objects: the whole-body answers are unchanged.
        guard case .failure(let tooMany) = intake.items(httpHeaders: headers, body: body, peer: nil, maxBatch: 3, now: Self.now) else {
            Issue.record("a batch over the limit was accepted")
            return
        }
        #expect(tooMany.rejection.reason == .tooLarge)
        let broken = Array(("[" + Self.event() + ", {\"id\" 1}]").utf8)
        guard case .failure(let malformed) = intake.items(httpHeaders: headers, body: broken, peer: nil, maxBatch: 10, now: Self.now) else {
            Issue.record("a batch that is not JSON was accepted")
            return
        }
        #expect(malformed.rejection.reason == .malformed)

        let outcomes: [EventOutcome] = [.accepted, .duplicate, .rejected(Rejection(.outOfRange, field: "data.x", "too big")), .accepted]
        let ids: [String?] = ["a", "q\"uote", "r", nil]
        let expected = JSONValue.object([
            "accepted": 2, "duplicate": 1, "rejected": 1,
            "results": .array([
                .object(["id": "a", "status": "accepted"]),
                .object(["id": "q\"uote", "status": "duplicate"]),
                .object(["id": "r", "status": "rejected", "reason": "out_of_range", "field": "data.x", "message": "too big"]),
                .object(["id": .null, "status": "accepted"]),
            ]),
        ]).canonicalBytes()
        #expect(HTTPIngest.batchAnswer(ids: ids, outcomes: outcomes) == expected)
        #expect(HTTPIngest.batchAnswer(ids: [], outcomes: []) == JSONValue.object(["accepted": 0, "duplicate": 0, "rejected": 0, "results": .array([])]).canonicalBytes())
    }
}

extension BatchPathTests {
    @Test("a structured-mode Kafka record gives KafkaBinding's exact record; with other headers it is left to it")
    func kafkaStructured() throws {
        let value = Array(Self.event().utf8)
        let contentType = KafkaHeader(key: "content-type", string: "application/cloudevents+json")
        let record = ConsumedRecord(topic: "raw", partition: 0, offset: 1, key: nil, value: value, headers: [contentType])
        func general(_ record: ConsumedRecord) throws -> ValidatedEvent {
            var traces = TraceGenerator()
            let event = try KafkaBinding.decode(KafkaBinding.Message(
                key: record.key, value: record.value, headers: record.headers.map { KafkaBinding.Header(name: $0.key, value: $0.value) }))
            return try validator.validate(event, size: value.count, ingestTime: Timestamp(date: Self.now), traces: &traces).get()
        }
        var traces = TraceGenerator()
        let ingestTime = Array(Timestamp(date: Self.now).text.utf8)
        let actual = try #require(intake.fastPath?.validate(record, ingestTime: ingestTime, traces: &traces))
        #expect(Self.same(actual, try general(record), traceGiven: false))
        var other = record
        other.headers.append(KafkaHeader(key: "x-origin", string: "a"))
        #expect(intake.fastPath?.validate(other, ingestTime: ingestTime, traces: &traces) == nil)
        _ = try general(other)
    }
}

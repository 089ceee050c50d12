import Contracts
import Foundation
import Ingest
import Kafka
import ServiceKit
import Testing

@Suite("ingest: the raw topic path against the real broker")
struct KafkaPathTests {
    @Test("valid binary and structured events reach loop.events normalized; every reason code is dead-lettered from a real bad input; PII never in loop.events or logs")
    func validateAndDeadLetter() async throws {
        let deployment = try await Deployment()
        let raw = deployment.names.rawEvents
        let logs = LogCapture()
        let service = try await RunningService.start(try deployment.environment(logger: logs.logger()))

        let pii = "alice.secret@example.com"
        let structured = CloudEvent(
            id: "s-1", source: "/tests", type: "loop.score_request.v1", subject: "VIC",
            time: try Timestamp(rfc3339: "2024-05-01T10:30:00+02:00"),
            extensions: ["traceparent": .string("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
            data: .json(.object(observationData(operator: pii).merging(["requestId": "r-1"]))))
        var bad: [(reason: String, field: String?, record: OutgoingRecord)] = []
        func add(_ reason: String, _ field: String?, _ record: OutgoingRecord) { bad.append((reason, field, record)) }
        add("malformed", nil, OutgoingRecord(topic: raw, value: Array("{not json".utf8),
                                             headers: [KafkaHeader(key: "content-type", string: "application/cloudevents+json")]))
        add("missing_attribute", "subject", binaryRecord(topic: raw, id: "b-subject", subject: nil, data: observationData(operator: pii)))
        add("missing_attribute", "time", binaryRecord(topic: raw, id: "b-time", time: nil, data: observationData(operator: pii)))
        add("invalid_attribute", "ce_time", binaryRecord(topic: raw, id: "b-badtime", time: "yesterday", data: observationData()))
        add("unsupported_spec_version", "ce_specversion", OutgoingRecord(
            topic: raw, value: Array("{}".utf8), headers: [KafkaHeader(key: "ce_specversion", string: "0.3")]))
        add("invalid_data", "data", OutgoingRecord(topic: raw, value: Array("[1,2]".utf8), headers: binaryRecord(
            topic: raw, id: "b-array", data: [:]).headers))
        add("unsupported_content_type", "content-type", OutgoingRecord(
            topic: raw, value: Array("xx".utf8), headers: [KafkaHeader(key: "content-type", string: "application/cloudevents+avro")]))
        add("unknown_type", "type", binaryRecord(topic: raw, id: "b-type", type: "com.example.thing", data: observationData()))
        add("unsupported_version", "type", binaryRecord(topic: raw, id: "b-version", type: "loop.observation.v3", data: observationData()))
        var missing = observationData(operator: pii)
        missing["nswprice"] = nil
        add("missing_field", "data.nswprice", binaryRecord(topic: raw, id: "b-missing", data: missing))
        add("missing_field", "data.requestId", binaryRecord(topic: raw, id: "b-outcome", type: "loop.outcome.v1", data: ["label": "1"]))
        add("field_type", "data.nswprice", binaryRecord(topic: raw, id: "b-fieldtype", data: observationData(nswprice: "high")))
        var outOfRange = observationData(operator: pii)
        outOfRange["dow"] = 9
        add("out_of_range", "data.dow", binaryRecord(topic: raw, id: "b-range", data: outOfRange))
        add("invalid_value", "data.label", binaryRecord(
            topic: raw, id: "b-label", type: "loop.outcome.v1", data: ["requestId": "r-9", "label": "2"]))
        var unknown = observationData(operator: pii)
        unknown["colour"] = "red"
        add("unknown_field", "data.colour", binaryRecord(topic: raw, id: "b-unknown", data: unknown))
        var large = observationData(operator: pii)
        large["padding"] = .string(String(repeating: "x", count: 70_000))
        add("too_large", nil, binaryRecord(topic: raw, id: "b-large", data: large))

        try await deployment.produceRaw(
            [binaryRecord(topic: raw, id: "b-ok", data: observationData(operator: pii)),
             structuredRecord(topic: raw, event: structured),
             binaryRecord(topic: raw, id: "b-outcome-ok", type: "loop.outcome.v1", data: ["requestId": "r-1", "label": 1, "value": 2.5])]
            + bad.map(\.record))

        let events = try await deployment.waitForRecords(deployment.names.events, count: 3)
        let letters = try await deployment.waitForRecords(deployment.names.deadLetters, count: bad.count)
        try await service.stop()

        // Accepted: binary mode, keyed by subject, canonical data, PII hashed, ingest time and trace stamped.
        #expect(events.count == 3)
        let byID = Dictionary(events.map { ($0.text("ce_id") ?? "", $0) }, uniquingKeysWith: { first, _ in first })
        let observation = try #require(byID["b-ok"])
        #expect(observation.key == Array("NSW".utf8))
        #expect(observation.text("ce_type") == "loop.observation.v1")
        #expect(observation.text("ce_subject") == "NSW")
        #expect(observation.text("ce_time") == "2024-05-01T10:00:00Z")
        #expect(observation.text("content-type") == "application/json")
        #expect(observation.text("ce_ingesttime").map { (try? Timestamp(rfc3339: $0)) != nil } == true)
        #expect(observation.text("ce_traceparent").map(TraceGenerator.isValid) == true)
        let data = try JSONValue.parse(observation.value ?? [])
        let expectedHash = Digest.hex(Digest.hmacSHA256(key: Deployment.piiKey, message: pii))
        #expect(data["operator"] == .string(expectedHash))
        #expect(data["nswprice"] == 0.5)
        #expect(observation.value == data.canonicalBytes())
        let request = try #require(byID["s-1"])
        #expect(request.key == Array("VIC".utf8))
        #expect(request.text("ce_traceparent") == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        #expect(request.text("ce_time") == "2024-05-01T10:30:00+02:00")
        let decoded = try KafkaBinding.decode(KafkaBinding.Message(
            key: request.key, value: request.value, headers: request.headers.map { KafkaBinding.Header(name: $0.key, value: $0.value) }))
        guard case .json(let requestData)? = decoded.data else { throw TestFailure("no JSON data") }
        #expect(requestData["requestId"] == "r-1")
        #expect(byID["b-outcome-ok"] != nil)

        // Rejected: one dead letter per bad input, with its reason, field and origin.
        #expect(letters.count == bad.count)
        let deadLetters = try letters.map { try DeadLetter(bytes: $0.value ?? []) }
        for expected in bad {
            let matching = deadLetters.filter { $0.reason == expected.reason && $0.field == expected.field }
            #expect(matching.count == 1, "reason \(expected.reason) at \(expected.field ?? "-"): \(deadLetters.map { "\($0.reason)@\($0.field ?? "-")" })")
        }
        for letter in deadLetters {
            #expect(letter.origin == "kafka")
            #expect(letter.topic == raw)
            #expect(letter.offset != nil)
        }
        #expect(Set(deadLetters.map { "\($0.partition ?? -1)/\($0.offset ?? -1)" }).count == bad.count)
        #expect(Set(RejectReason.allCases.map(\.rawValue)) == Set(bad.map(\.reason)))

        // PII: never in loop.events, the DLQ or the logs.
        for record in events + letters { #expect(!record.allText.contains(pii)) }
        #expect(!logs.text.isEmpty)
        #expect(!logs.text.contains(pii))

        // Counters per reason and type.
        #expect(service.metric("loop_ingest_events_accepted_total{type=\"loop.observation.v1\"}") == 1)
        #expect(service.metric("loop_ingest_events_rejected_total{reason=\"missing_field\"}") == 2)
        #expect(service.metric("loop_ingest_events_rejected_total{reason=\"too_large\"}") == 1)
    }

    @Test("a (source, id) seen before a restart is a duplicate after it: counted, not written again")
    func dedupeAcrossRestart() async throws {
        let deployment = try await Deployment()
        let raw = deployment.names.rawEvents
        let first = try await RunningService.start(try deployment.environment(logger: LogCapture().logger()))
        let batch = (0..<50).map { binaryRecord(topic: raw, id: "e-\($0)", data: observationData()) }
        // Twice in the same run: the second copies are duplicates already.
        try await deployment.produceRaw(batch + batch.prefix(10))
        _ = try await deployment.waitForRecords(deployment.names.events, count: 50)
        #expect(await waitFor { first.metric("loop_ingest_events_duplicate_total{type=\"loop.observation.v1\"}") == 10 })
        try await first.stop()

        let second = try await RunningService.start(try deployment.environment(logger: LogCapture().logger()))
        // Another source with the same ids is a different event.
        let more = (0..<5).map { binaryRecord(topic: raw, id: "e-\($0)", source: "/other", data: observationData()) }
        try await deployment.produceRaw(batch + more)
        let events = try await deployment.waitForRecords(deployment.names.events, count: 55)
        #expect(await waitFor { second.metric("loop_ingest_events_duplicate_total{type=\"loop.observation.v1\"}") == 50 })
        try await second.stop()
        let final = try await deployment.readAll(deployment.names.events)
        #expect(events.count == 55)
        #expect(final.count == 55)
        #expect(try await deployment.readAll(deployment.names.deadLetters).isEmpty)
    }
}

/// Waits until `condition` holds, checking every 20 ms, for at most `timeout`.
func waitFor(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

extension JSONObject {
    func merging(_ other: JSONObject) -> JSONObject {
        var result = self
        for member in other { result[member.key] = member.value }
        return result
    }
}

import Contracts
import Foundation
import Kafka
import Loopctl
import TestSupport
import Testing

@Suite("tail and dlq against the broker")
struct TailAndDLQTests {
    @Test("tail decodes predictions, CloudEvents and registry records; an undecodable value carries error and raw")
    func tailDecodes() async throws {
        let predictions = Broker.uniqueTopic("t") + ".predictions"
        let events = Broker.uniqueTopic("t") + ".events"
        let models = Broker.uniqueTopic("t") + ".models"
        try await TestKafka.createTopics([predictions, events, models])
        let config = try await TestKafka.config()
        let producer = try KafkaProducer(config: config, logger: TestKafka.logger)
        let prediction = Prediction(
            requestId: "r-1", entity: "nsw", eventTimeMs: 1_000, modelVersion: 3, role: .champion, score: 0.8,
            decision: true, route: .auto, reasons: [], features: [FeatureValue(name: "x", value: 1.5)], explanation: [],
            challengers: [], featuresAsOfMs: nil, featureAgeSeconds: nil, latencyMs: 2.5, traceparent: nil)
        let event = CloudEvent(
            id: "e-1", source: "/test", type: "loop.observation.v1", subject: "nsw",
            time: Timestamp(seconds: 60), data: .json(["nswprice": 0.5]))
        let registry = RegistryState(champion: 3, canary: nil, canaryShare: 0, shadows: [], history: [2], revision: 7)
        _ = try await producer.send([
            OutgoingRecord(topic: predictions, key: Array("nsw".utf8), value: prediction.bytes),
            OutgoingRecord(topic: predictions, key: Array("nsw".utf8), value: Array("not json".utf8)),
            KafkaEventSink.record(event, topic: events),
            OutgoingRecord(topic: models, key: Array(RegistryState.key.utf8), value: registry.bytes),
        ])
        let reader = TopicReader(config: config, logger: TestKafka.logger)

        var lines: [JSONValue] = []
        try await reader.read(predictions, start: .last(10), follow: false) { records in
            lines += records.map { RecordDecoder.json($0, as: RecordDecoder.kind(ofTopic: $0.topic)) }
        }
        #expect(lines.count == 2)
        #expect(lines[0]["prediction"]?["requestId"] == "r-1")
        #expect(lines[0]["prediction"]?["modelVersion"] == 3)
        #expect(lines[0]["key"] == "nsw")
        #expect(lines[0]["offset"] == 0)
        #expect(lines[1]["error"]?.stringValue?.contains("prediction record") == true)
        #expect(lines[1]["raw"] == "not json")

        let eventLine = try #require(try await reader.readAll(events).first.map { RecordDecoder.json($0, as: .event) })
        #expect(eventLine["event"]?["id"] == "e-1")
        #expect(eventLine["event"]?["data"]?["nswprice"] == 0.5)
        #expect(eventLine["event"]?["time"] == "1970-01-01T00:01:00Z")

        let modelLine = try #require(try await reader.readAll(models).first.map { RecordDecoder.json($0, as: .model) })
        #expect(modelLine["registry"]?["champion"] == 3)
        #expect(modelLine["registry"]?["revision"] == 7)

        var last: [Int64] = []
        try await reader.read(predictions, start: .last(1), follow: false) { last += $0.map(\.offset) }
        #expect(last == [1], "--last 1 starts at the newest record")
    }

    @Test("dlq list groups by reason; replay sends the original bytes and headers back to the raw topic")
    func deadLetterRoundTrip() async throws {
        let dlq = Broker.uniqueTopic("d") + ".events.dlq"
        let raw = Broker.uniqueTopic("d") + ".events.raw"
        try await TestKafka.createTopics([dlq, raw], partitions: 2)
        let config = try await TestKafka.config()
        let producer = try KafkaProducer(config: config, logger: TestKafka.logger)
        let binaryBody: [UInt8] = [0xFF, 0x00, 0x7B]
        let letters = [
            DeadLetter(
                reason: "out_of_range", field: "data.nswprice", message: "nswprice 3 is above max 1", origin: "kafka",
                topic: raw, partition: 0, offset: 5, body: #"{"nswprice":3}"#, bodyEncoding: "utf8",
                headers: ["ce_id": "e-5", "ce_type": "loop.observation.v1", "ce_source": "/s", "ce_subject": "nsw",
                          "content-type": "application/json"],
                rejectedAtMs: 1_000),
            DeadLetter(
                reason: "malformed", field: nil, message: "not JSON", origin: "kafka", topic: raw, partition: 1, offset: 9,
                body: Data(binaryBody).base64EncodedString(), bodyEncoding: "base64", headers: ["ce_id": "e-9"],
                rejectedAtMs: 2_000),
            DeadLetter(
                reason: "out_of_range", field: "data.nswdemand", message: "nswdemand -1 is below min 0", origin: "http",
                peer: "127.0.0.1", body: #"{"nswdemand":-1}"#, bodyEncoding: "utf8",
                headers: ["ce-id": "e-7", "ce-subject": "vic", "content-type": "application/json", "user-agent": "curl"],
                rejectedAtMs: 3_000),
        ]
        _ = try await producer.send(letters.map { OutgoingRecord(topic: dlq, key: nil, value: $0.bytes, partition: 0) }
            + [OutgoingRecord(topic: dlq, key: nil, value: Array("garbage".utf8), partition: 1)])

        let reader = TopicReader(config: config, logger: TestKafka.logger)
        let (entries, undecodable) = DeadLetters.entries(try await reader.readAll(dlq))
        #expect(entries.count == 3)
        #expect(undecodable == 1)
        let groups = DeadLetters.groups(entries)
        #expect(groups.map(\.reason) == ["out_of_range", "malformed"])
        #expect(groups[0].count == 2)
        #expect(groups[0].fields.map(\.field) == ["data.nswdemand", "data.nswprice"])
        #expect(groups[0].example == "nswdemand -1 is below min 0", "the newest letter's message")
        #expect(groups[0].lastRejectedMs == 3_000)
        let listing = DeadLetters.listText(groups, undecodable: undecodable)
        #expect(listing.contains("out_of_range"))
        #expect(listing.contains("66.7%"))
        #expect(listing.contains("3 dead letters in 2 reasons; 1 records did not decode"))

        let replayed = try entries.map { try DeadLetters.replayRecord($0, topic: raw) }
        _ = try await producer.send(replayed)
        let back = try await reader.readAll(raw)
        #expect(back.count == 3)
        let byId = Dictionary(uniqueKeysWithValues: back.map { (String(decoding: $0.header("ce_id")!.value!, as: UTF8.self), $0) })
        let first = try #require(byId["e-5"])
        #expect(first.value == Array(#"{"nswprice":3}"#.utf8))
        #expect(first.key == Array("nsw".utf8), "keyed by ce_subject when the letter had no key")
        #expect(Set(first.headers.map(\.key)) == ["ce_id", "ce_type", "ce_source", "ce_subject", "content-type"])
        #expect(first.header("ce_type")?.value == Array("loop.observation.v1".utf8))
        #expect(byId["e-9"]?.value == binaryBody, "base64 bodies go back as the original bytes")
        let fromHTTP = try #require(byId["e-7"])
        #expect(Set(fromHTTP.headers.map(\.key)) == ["ce_id", "ce_subject", "content-type"], "HTTP ce- headers become Kafka ce_ headers")
        #expect(fromHTTP.key == Array("vic".utf8))
    }
}

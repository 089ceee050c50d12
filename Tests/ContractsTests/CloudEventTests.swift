import Foundation
import Testing
@testable import Contracts

// MARK: - Spec examples (json-format.md §3.2, spec.md "Example")

let specExampleXML = """
{
    "specversion" : "1.0",
    "type" : "com.github.pull_request.opened",
    "source" : "https://github.com/cloudevents/spec/pull",
    "subject" : "123",
    "id" : "A234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "datacontenttype" : "text/xml",
    "data" : "<much wow=\\"xml\\"/>"
}
"""

let specExampleJSONData = """
{
    "specversion" : "1.0",
    "type" : "com.example.someevent",
    "source" : "/mycontext",
    "subject": null,
    "id" : "C234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "datacontenttype" : "application/json",
    "data" : {
        "appinfoA" : "abc",
        "appinfoB" : 123,
        "appinfoC" : true
    }
}
"""

let specExampleStringData = """
{
    "specversion" : "1.0",
    "type" : "com.example.someevent",
    "source" : "/mycontext",
    "subject": null,
    "id" : "D234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "data" : "I'm just a string"
}
"""

let specExampleBase64 = """
{
    "specversion" : "1.0",
    "type" : "com.example.someevent",
    "source" : "/mycontext",
    "id" : "D234-1234-1234",
    "data_base64" : "eyAieHl6IjogMTIzIH0="
}
"""

func decodeJSON(_ text: String) throws(CloudEventError) -> CloudEvent { try JSONFormat.decode(Array(text.utf8)) }

func decodeError(_ text: String) -> CloudEventError? {
    do {
        _ = try decodeJSON(text)
        return nil
    } catch {
        return error
    }
}

/// A minimal valid event with one member replaced or added.
func event(with member: String) -> String {
    #"{"specversion":"1.0","id":"1","source":"/s","type":"t", \#(member)}"#
}

let observation = CloudEvent(
    id: "e-1", source: "urn:elec2:replay", type: EventType.observation.description, subject: "NSW",
    time: try! Timestamp(rfc3339: "1996-05-07T10:30:00.25Z"), extensions: ["partitionkey": .string("NSW"), "traceparent": .string("00-ab-cd-01")],
    data: .json(["nswprice": 0.056443, "dow": 2]))

@Suite struct JSONFormatTests {
    @Test func decodesSpecExamples() throws {
        let xml = try decodeJSON(specExampleXML)
        #expect(xml.subject == "123")
        #expect(xml.time?.seconds == 1_522_949_460)
        #expect(xml.extensions == ["comexampleextension1": .string("value"), "comexampleothervalue": .integer(5)])
        #expect(xml.data == .text("<much wow=\"xml\"/>"))

        let json = try decodeJSON(specExampleJSONData)
        #expect(json.subject == nil)
        #expect(json.data == .json(["appinfoA": "abc", "appinfoB": 123, "appinfoC": true]))

        let string = try decodeJSON(specExampleStringData)
        #expect(string.dataContentType == nil)
        #expect(string.data == .json("I'm just a string"))

        let binary = try decodeJSON(specExampleBase64)
        #expect(binary.data == .binary(Array(#"{ "xyz": 123 }"#.utf8)))
        #expect(binary.dataContentType == nil)
    }

    @Test(arguments: [specExampleXML, specExampleJSONData, specExampleStringData, specExampleBase64])
    func structuredRoundTrip(text: String) throws {
        let event = try decodeJSON(text)
        let encoded = JSONFormat.encode(event)
        #expect(try JSONFormat.decode(encoded) == event)
        #expect(JSONFormat.encode(try JSONFormat.decode(encoded)) == encoded)
    }

    @Test func encodesDataBase64AndNoContentTypeForBinary() throws {
        let event = CloudEvent(id: "1", source: "/s", type: "t", data: .binary([0, 1, 2, 255]))
        let value = try JSONValue.parse(JSONFormat.encode(event))
        #expect(value["data_base64"] == "AAEC/w==")
        #expect(value["data"] == nil)
        #expect(value["datacontenttype"] == nil)
    }

    @Test func explicitNullDataIsKept() throws {
        #expect(try decodeJSON(event(with: #""data":null"#)).data == .json(.null))
        #expect(try decodeJSON(event(with: #""subject":"x""#)).data == nil)
    }

    @Test func batchWithGoodAndBadEvents() throws {
        let batch = "[\(specExampleJSONData), \(event(with: #""time":"yesterday""#)), {\"id\":\"x\"}, 7, \(specExampleBase64)]"
        let results = try JSONFormat.decodeBatch(Array(batch.utf8))
        #expect(results.count == 5)
        #expect((try? results[0].get())?.id == "C234-1234-1234")
        #expect((try? results[4].get())?.id == "D234-1234-1234")
        let errors = results.compactMap { result -> CloudEventError? in
            if case .failure(let error) = result { return error }
            return nil
        }
        #expect(errors.map(\.index) == [1, 2, 3])
        #expect(errors.map(\.path) == ["[1].time", "[2].specversion", "[3]"])
        #expect(errors.map(\.reason) == [.invalidAttribute, .missingAttribute, .malformed])
    }

    @Test func reusedParserDecodesTheSame() throws {
        var parser = JSONParser()
        for text in [specExampleXML, specExampleBase64, specExampleJSONData] {
            let bytes = Array(text.utf8)
            let event = try bytes.withUnsafeBytes { buffer throws(CloudEventError) in try JSONFormat.decode(buffer, parser: &parser) }
            #expect(event == (try decodeJSON(text)))
        }
    }

    @Test func validateChecksEventsBuiltInCode() throws {
        try observation.validate()
        var bad = observation
        bad.extensions["Bad_Name"] = .string("x")
        #expect(throws: CloudEventError.self) { try bad.validate() }
        bad = observation
        bad.source = "has spaces"
        #expect(throws: CloudEventError.self) { try bad.validate() }
        bad = observation
        bad.id = ""
        #expect(throws: CloudEventError.self) { try bad.validate() }
    }

    @Test func batchRoundTripAndEmptyBatch() throws {
        let events = [try decodeJSON(specExampleXML), observation]
        let decoded = try JSONFormat.decodeBatch(JSONFormat.encodeBatch(events)).map { try $0.get() }
        #expect(decoded == events)
        #expect(try JSONFormat.decodeBatch(Array("[]".utf8)).isEmpty)
        #expect(throws: CloudEventError.self) { try JSONFormat.decodeBatch(Array("{}".utf8)) }
    }
}

@Suite struct CloudEventErrorTests {
    @Test func malformed() {
        #expect(decodeError("{")?.reason == .malformed)
        #expect(decodeError("[]")?.reason == .malformed)
        #expect(decodeError(#""x""#)?.reason == .malformed)
    }

    @Test func missingAttribute() {
        #expect(decodeError(#"{"id":"1","source":"/s","type":"t"}"#)?.path == "specversion")
        let missingSource = decodeError(#"{"specversion":"1.0","id":"1","type":"t"}"#)
        #expect(missingSource?.reason == .missingAttribute)
        #expect(missingSource?.path == "source")
        #expect(decodeError(#"{"specversion":"1.0","id":null,"source":"/s","type":"t"}"#)?.path == "id")
    }

    @Test func unsupportedSpecVersion() {
        let error = decodeError(#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#)
        #expect(error?.reason == .unsupportedSpecVersion)
        #expect(error?.path == "specversion")
    }

    @Test(arguments: [
        (#""subject":"""#, "subject"),
        (#""time":"2018-04-05 17:31:00Z""#, "time"),
        (#""time":"2018-02-30T17:31:00Z""#, "time"),
        (#""subject":5"#, "subject"),
        (#""dataschema":"/relative""#, "dataschema"),
        (#""datacontenttype":"json""#, "datacontenttype"),
        (#""comExample":"x""#, "comExample"),
        (#""com_example":"x""#, "com_example"),
        (#""ext":1.5"#, "ext"),
        (#""ext":4294967296"#, "ext"),
        (#""ext":{"a":1}"#, "ext"),
        (#""ext":"a\u0007b""#, "ext"),
    ])
    func invalidAttribute(member: String, path: String) {
        let error = decodeError(event(with: member))
        #expect(error?.reason == .invalidAttribute)
        #expect(error?.path == path)
    }

    @Test func requiredAttributesMustBeNonEmpty() {
        let error = decodeError(#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#)
        #expect(error?.reason == .invalidAttribute)
        #expect(error?.path == "id")
    }

    @Test func sourceMustBeAURIReference() {
        let error = decodeError(#"{"specversion":"1.0","id":"1","source":"not a uri","type":"t"}"#)
        #expect(error?.reason == .invalidAttribute)
        #expect(error?.path == "source")
    }

    @Test func invalidData() {
        #expect(decodeError(event(with: #""data":1,"data_base64":"AA==""#))?.reason == .invalidData)
        #expect(decodeError(event(with: #""data_base64":"not base64!""#))?.path == "data_base64")
        #expect(decodeError(event(with: #""datacontenttype":"text/plain","data":{"a":1}"#))?.reason == .invalidData)
    }

    @Test func longExtensionNamesAreAllowed() throws {
        let event = try decodeJSON(event(with: #""averyveryverylongextensionname":"x""#))
        #expect(event.extensions["averyveryverylongextensionname"] == .string("x"))
    }

    @Test func everyReasonHasARealInput() {
        let inputs: [CloudEventError.Reason: String] = [
            .malformed: "nope",
            .missingAttribute: #"{"specversion":"1.0"}"#,
            .invalidAttribute: event(with: #""time":"now""#),
            .unsupportedSpecVersion: #"{"specversion":"2.0"}"#,
            .invalidData: event(with: #""data_base64":5"#),
        ]
        for (reason, input) in inputs { #expect(decodeError(input)?.reason == reason) }
        let avro = KafkaBinding.Message(value: [1], headers: [KafkaBinding.Header("content-type", "application/cloudevents+avro")])
        #expect(throws: CloudEventError(.unsupportedContentType, path: "content-type", "application/cloudevents+avro is not supported in Kafka (only application/cloudevents+json structured mode)")) {
            try KafkaBinding.decode(avro)
        }
        #expect(Set(inputs.keys).union([.unsupportedContentType]) == Set(CloudEventError.Reason.allCases))
    }
}

@Suite struct KafkaBindingTests {
    @Test func decodesTheBindingsBinaryExample() throws {
        let message = KafkaBinding.Message(
            key: Array("mykey".utf8), value: [0x01, 0x02],
            headers: [
                .init("ce_specversion", "1.0"), .init("ce_type", "com.example.someevent"),
                .init("ce_source", "/mycontext/subcontext"), .init("ce_id", "1234-1234-1234"),
                .init("ce_time", "2018-04-05T03:56:24Z"), .init("content-type", "application/avro"),
            ])
        let event = try KafkaBinding.decode(message)
        #expect(event.source == "/mycontext/subcontext")
        #expect(event.dataContentType == "application/avro")
        #expect(event.data == .binary([1, 2]))
        #expect(event.extensions.isEmpty)
    }

    @Test func binaryRoundTrip() throws {
        let message = KafkaBinding.encode(observation, mode: .binary, key: .subject)
        #expect(message.key == Array("NSW".utf8))
        #expect(message.header("ce_specversion")?.value == Array("1.0".utf8))
        #expect(message.header("content-type")?.value == Array("application/json".utf8))
        #expect(message.value == Array(#"{"dow":2,"nswprice":0.056443}"#.utf8))
        var expected = observation
        expected.dataContentType = "application/json"
        #expect(try KafkaBinding.decode(message) == expected)
    }

    @Test func structuredRoundTrip() throws {
        let message = KafkaBinding.encode(observation, mode: .structured, key: .partitionKey)
        #expect(message.key == Array("NSW".utf8))
        #expect(message.header("content-type")?.value == Array("application/cloudevents+json; charset=UTF-8".utf8))
        #expect(try KafkaBinding.decode(message) == observation)
    }

    @Test func noDataIsATombstoneInBinaryMode() throws {
        let event = CloudEvent(id: "1", source: "/s", type: "t")
        let message = KafkaBinding.encode(event)
        #expect(message.value == nil)
        #expect(message.header("content-type") == nil)
        #expect(try KafkaBinding.decode(message) == event)
    }

    @Test func errors() {
        let invalidUTF8 = KafkaBinding.Message(value: nil, headers: [
            .init("ce_specversion", "1.0"), .init(name: "ce_id", value: [0xFF]), .init("ce_source", "/s"), .init("ce_type", "t"),
        ])
        #expect(throws: CloudEventError.self) { try KafkaBinding.decode(invalidUTF8) }
        let badJSON = KafkaBinding.Message(value: Array("{".utf8), headers: [
            .init("ce_specversion", "1.0"), .init("ce_id", "1"), .init("ce_source", "/s"), .init("ce_type", "t"),
            .init("content-type", "application/json"),
        ])
        #expect((try? KafkaBinding.decode(badJSON)) == nil)
        do {
            _ = try KafkaBinding.decode(badJSON)
        } catch {
            #expect(error.reason == .invalidData)
        }
        let tombstone = KafkaBinding.Message(key: [1], value: nil, headers: [])
        do {
            _ = try KafkaBinding.decode(tombstone)
            Issue.record("a bare tombstone is not an event")
        } catch {
            #expect(error.reason == .missingAttribute)
        }
    }
}

@Suite struct HTTPBindingTests {
    @Test func percentEncodingFollowsTheBinding() throws {
        #expect(HTTPBinding.percentEncode("Euro € 😀") == "Euro%20%E2%82%AC%20%F0%9F%98%80")
        #expect(HTTPBinding.percentEncode("a\"b%c") == "a%22b%25c")
        #expect(HTTPBinding.percentEncode("/path?x=1&y=[2]") == "/path?x=1&y=[2]")
        #expect(try HTTPBinding.decodeHeaderValue("Euro%20%e2%82%ac%20%F0%9F%98%80", path: "ce-x") == "Euro € 😀")
        #expect(try HTTPBinding.decodeHeaderValue("%41%42C", path: "ce-x") == "ABC")
        #expect(try HTTPBinding.decodeHeaderValue(#""quoted \"value\" here""#, path: "ce-x") == #"quoted "value" here"#)
        #expect(throws: CloudEventError.self) { try HTTPBinding.decodeHeaderValue("%C0%A0", path: "ce-x") }
        #expect(throws: CloudEventError.self) { try HTTPBinding.decodeHeaderValue("%4", path: "ce-x") }
        #expect(throws: CloudEventError.self) { try HTTPBinding.decodeHeaderValue(#""open"#, path: "ce-x") }
    }

    @Test func decodesTheJSONFormatsBinaryExamples() throws {
        let message = HTTPBinding.Message(
            headers: [
                ("ce-specversion", "1.0"), ("CE-Type", "com.example.someevent"), ("ce-source", "/mycontext"),
                ("ce-id", "D234-1234-1234"), ("ce-time", "2018-04-05T17:31:00Z"), ("ce-comexampleextension1", "value"),
                ("ce-comexampleothervalue", "5"), ("Content-Type", "application/json"),
            ],
            body: Array(#""I'm just a string""#.utf8))
        guard case .single(let event) = try HTTPBinding.decode(message) else {
            Issue.record("expected one event")
            return
        }
        #expect(event.type == "com.example.someevent")
        #expect(event.data == .json("I'm just a string"))
        #expect(event.extensions["comexampleothervalue"] == .string("5"))
    }

    @Test func binaryRoundTripWithPercentEncodedValues() throws {
        var event = observation
        event.subject = "Région \"Sud\" 100%"
        event.extensions["note"] = .string("ça va 😀")
        let message = HTTPBinding.encode(event, mode: .binary)
        #expect(message.header("ce-subject") == "R%C3%A9gion%20%22Sud%22%20100%25")
        #expect(message.headers.allSatisfy { $0.value.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E } })
        guard case .single(let decoded) = try HTTPBinding.decode(message) else {
            Issue.record("expected one event")
            return
        }
        var expected = event
        expected.dataContentType = "application/json"
        #expect(decoded == expected)
    }

    @Test func structuredAndBatchModes() throws {
        let structured = HTTPBinding.encode(observation, mode: .structured)
        #expect(try HTTPBinding.decode(structured) == .single(observation))
        let batch = HTTPBinding.encodeBatch([observation, observation])
        guard case .batch(let results) = try HTTPBinding.decode(batch) else {
            Issue.record("expected a batch")
            return
        }
        #expect(results.map { try? $0.get() } == [observation, observation])
        let avro = HTTPBinding.Message(headers: [("content-type", "application/cloudevents+avro")], body: [1])
        #expect(throws: CloudEventError.self) { try HTTPBinding.decode(avro) }
    }

    @Test func datacontenttypeHeaderIsRejectedInBinaryMode() {
        let message = HTTPBinding.Message(
            headers: [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t"), ("ce-datacontenttype", "text/plain")],
            body: [])
        do {
            _ = try HTTPBinding.decode(message)
            Issue.record("expected an error")
        } catch {
            #expect(error.reason == .invalidAttribute)
            #expect(error.path == "ce-datacontenttype")
        }
    }
}

@Suite struct TimestampTests {
    @Test func parsesRFC3339Strictly() throws {
        #expect(try Timestamp(rfc3339: "1970-01-01T00:00:00Z").seconds == 0)
        let offset = try Timestamp(rfc3339: "2018-04-05T19:31:00.5+02:00")
        #expect(offset.seconds == 1_522_949_460)
        #expect(offset.nanoseconds == 500_000_000)
        #expect(offset == (try Timestamp(rfc3339: "2018-04-05t17:31:00.500z")))
        #expect(offset.text == "2018-04-05T19:31:00.5+02:00")
        #expect(try Timestamp(rfc3339: "2024-02-29T00:00:00Z").seconds == 1_709_164_800)
        #expect(try Timestamp(rfc3339: "1969-12-31T23:59:59.123456789Z").nanoseconds == 123_456_789)
        for bad in ["2018-04-05", "2018-04-05T17:31Z", "2018-04-05T17:31:00", "2023-02-29T00:00:00Z", "2018-13-01T00:00:00Z",
                    "2018-04-05T24:00:00Z", "2018-04-05T17:31:00.Z", "2018-04-05T17:31:00+0200", " 2018-04-05T17:31:00Z"] {
            #expect(throws: TimestampError.self, "\(bad)") { try Timestamp(rfc3339: bad) }
        }
    }

    /// The byte readers for hot paths give the instant `init(rfc3339:)` gives, and refuse what it refuses.
    @Test func readsTheInstantStraightFromBytes() throws {
        for text in ["2024-02-29T23:59:59Z", "2024-01-01T00:00:01.5Z", "1999-12-31T12:00:00.123456789Z", "2030-06-15T08:30:00.000001z",
                     "1969-07-20T20:17:40Z", "2024-01-01T00:00:00+01:00"] {
            let timestamp = try Timestamp(rfc3339: text)
            #expect(try Timestamp.epochSeconds(rfc3339: Array(text.utf8)) == Double(timestamp.seconds) + Double(timestamp.nanoseconds) / 1e9, "\(text)")
            #expect(try Timestamp.epochMilliseconds(rfc3339: Array(text.utf8)) == timestamp.epochMilliseconds, "\(text)")
        }
        for bad in ["2023-02-29T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T00:00:00.Z"] {
            #expect(throws: TimestampError.self, "\(bad)") { try Timestamp.epochSeconds(rfc3339: Array(bad.utf8)) }
            #expect(throws: TimestampError.self, "\(bad)") { try Timestamp.epochMilliseconds(rfc3339: Array(bad.utf8)) }
        }
    }

    @Test func formatsUTC() {
        #expect(Timestamp(seconds: 1_522_949_460).text == "2018-04-05T17:31:00Z")
        #expect(Timestamp(seconds: -1, nanoseconds: 250_000_000).text == "1969-12-31T23:59:59.25Z")
        #expect(Timestamp(seconds: 951_782_400).text == "2000-02-29T00:00:00Z")
    }
}

@Suite struct EventTypeTests {
    @Test func constantsAndParsing() {
        #expect(EventType.observation.description == "loop.observation.v1")
        #expect(EventType.scoreRequest.description == "loop.score_request.v1")
        #expect(EventType.outcome.description == "loop.outcome.v1")
        #expect(EventType.review.description == "loop.review.v1")
        #expect(EventType("loop.outcome.v2") == EventType(kind: .outcome, version: 2))
        #expect(EventType("loop.outcome.v01") == nil)
        #expect(EventType("loop.unknown.v1") == nil)
        #expect(EventType("com.example.observation.v1") == nil)
        #expect(EventType.observation.isAccepted)
        #expect(!EventType(kind: .observation, version: 3).isAccepted)
    }

    @Test func readersAcceptCurrentAndPreviousSchemaVersion() {
        let current: SchemaVersion = 3
        #expect(current.accepts(3))
        #expect(current.accepts(2))
        #expect(!current.accepts(1))
        #expect(!current.accepts(4))
        #expect(SchemaVersion.check(["schemaVersion": 2], current: current) == .success(2))
        #expect(SchemaVersion.check(["schemaVersion": 1], current: current) == .failure(.unsupported(1, current: 3)))
        #expect(SchemaVersion.check(["x": 1], current: current) == .failure(.missing))
        #expect(SchemaVersion.check(["schemaVersion": "2"], current: current) == .failure(.invalid("2")))
    }
}

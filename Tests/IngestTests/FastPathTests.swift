import Contracts
import Foundation
@testable import Ingest
import Kafka
import ServiceKit
import Testing

/// The binary-mode fast path against the general path (KafkaBinding + EventValidator): for every
/// input it accepts, the `loop.events` record must be byte-identical; everything else it must leave
/// to the general path. No broker needed.
@Suite struct FastPathTests {
    let validator: EventValidator
    let fastPath: FastPath
    static let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    static let now = Date(timeIntervalSince1970: 1_714_557_600.25)

    init() throws {
        let yaml = try String(contentsOf: packageRoot.appendingPathComponent("examples/elec2/loop.yaml"), encoding: .utf8)
        let config = try LoopConfig.parse(yaml: yaml, file: "loop.yaml")
        validator = try EventValidator(config: config, piiKey: Array(Deployment.piiKey.utf8))
        fastPath = try #require(FastPath(validator: validator))
    }

    func record(
        _ value: String, type: String = "loop.observation.v1", id: String = "e-1", source: String = "/tests",
        time: String? = "2024-05-01T10:00:00Z", extra: [KafkaHeader] = [KafkaHeader(key: "ce_traceparent", string: trace)]
    ) -> ConsumedRecord {
        var headers = [KafkaHeader(key: "ce_specversion", string: "1.0"), KafkaHeader(key: "ce_id", string: id),
                       KafkaHeader(key: "ce_source", string: source), KafkaHeader(key: "ce_type", string: type),
                       KafkaHeader(key: "ce_subject", string: "NSW"), KafkaHeader(key: "content-type", string: "application/json")]
        if let time { headers.append(KafkaHeader(key: "ce_time", string: time)) }
        headers += extra
        return ConsumedRecord(topic: "raw", partition: 0, offset: 7, key: Array("NSW".utf8), value: Array(value.utf8), headers: headers)
    }

    /// What the general path makes of `record`.
    func general(_ record: ConsumedRecord) -> Result<ValidatedEvent, Rejection> {
        let message = KafkaBinding.Message(
            key: record.key, value: record.value, headers: record.headers.map { KafkaBinding.Header(name: $0.key, value: $0.value) })
        var traces = TraceGenerator()
        do throws(CloudEventError) {
            let event = try KafkaBinding.decode(message)
            return validator.validate(event, size: record.value?.count ?? 0, ingestTime: Timestamp(date: Self.now), traces: &traces)
        } catch {
            return .failure(Rejection(error))
        }
    }

    func fast(_ record: ConsumedRecord) -> ValidatedEvent? {
        var traces = TraceGenerator()
        return fastPath.validate(record, ingestTime: Array(Timestamp(date: Self.now).text.utf8), traces: &traces)
    }

    static func same(_ left: ValidatedEvent, _ right: ValidatedEvent) -> Bool {
        left.dedupeHash == right.dedupeHash && left.id == right.id && left.kind == right.kind
            && left.record.topic == right.record.topic && left.record.key == right.record.key
            && left.record.value == right.record.value && left.record.headers == right.record.headers
    }

    @Test("inputs in the common shape give the general path's exact record", arguments: [
        // Canonical, PII hashed (rewritten).
        #"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"operator":"alice@example.com","period":0.25}"#,
        // Canonical without PII: copied through.
        #"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"period":0.25}"#,
        // Whitespace, unsorted keys, a null, an integer in a double field, non-ASCII text.
        "{ \"period\": 0.25,\n \"dow\":3, \"nswprice\" : 1, \"nswdemand\":0.123456789012345, \"vicprice\": null, \"operator\": \"zoë\" }",
        // Label as a category, negative zero-led decimals never reach bounds here.
        #"{"dow":7,"label":"1","nswdemand":0.001,"nswprice":0.0,"period":1.0}"#,
    ])
    func observations(_ value: String) throws {
        let input = record(value)
        let expected = try general(input).get()
        let actual = try #require(fast(input))
        #expect(Self.same(actual, expected), "\(String(decoding: actual.record.value ?? [], as: UTF8.self))")
        #expect(!String(decoding: actual.record.value ?? [], as: UTF8.self).contains("alice"))
    }

    @Test("score requests, outcomes and reviews match the general path")
    func otherKinds() throws {
        let inputs = [
            record(#"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"period":0.25,"requestId":"r-1"}"#, type: "loop.score_request.v1"),
            record(#"{"label":"1","requestId":"r-1","value":12.5}"#, type: "loop.outcome.v1"),
            record(#"{"label":0,"requestId":"r-1"}"#, type: "loop.outcome.v1"),
            record(#"{"label":"0","note":"checked","requestId":"r-1","reviewer":"ann"}"#, type: "loop.review.v1"),
        ]
        for input in inputs {
            let expected = try general(input).get()
            let actual = try #require(fast(input))
            #expect(Self.same(actual, expected))
        }
    }

    @Test("a missing or malformed traceparent is started anew, an incoming ingesttime replaced")
    func traceAndIngestTime() throws {
        let input = record(
            #"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"period":0.25}"#,
            extra: [KafkaHeader(key: "ce_traceparent", string: "bogus"), KafkaHeader(key: "ce_ingesttime", string: "2020-01-01T00:00:00Z")])
        let expected = try general(input).get()
        let actual = try #require(fast(input))
        func withoutTrace(_ event: ValidatedEvent) -> [KafkaHeader] { event.record.headers.filter { $0.key != "ce_traceparent" } }
        #expect(withoutTrace(actual) == withoutTrace(expected))
        let trace = try #require(actual.record.headers.first { $0.key == "ce_traceparent" }?.value)
        #expect(TraceGenerator.isValid(String(decoding: trace, as: UTF8.self)))
        #expect(actual.record.value == expected.record.value)
    }

    @Test("invalid inputs are left to the general path, which rejects them", arguments: [
        (#"{"dow":3,"nswdemand":0.4,"nswprice":1.5,"period":0.25}"#, "loop.observation.v1", RejectReason.outOfRange),
        (#"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"period":0.25,"extra":1}"#, "loop.observation.v1", .unknownField),
        (#"{"dow":3,"nswdemand":0.4,"nswprice":0.5}"#, "loop.observation.v1", .missingField),
        (#"{"dow":3.5,"nswdemand":0.4,"nswprice":0.5,"period":0.25}"#, "loop.observation.v1", .fieldType),
        (#"{"dow":3,"nswdemand":0.4,"nswprice":"x","period":0.25}"#, "loop.observation.v1", .fieldType),
        (#"{"dow":3,"nswdemand":0.4,"nswprice":{"a":1},"period":0.25}"#, "loop.observation.v1", .fieldType),
        (#"{"dow":3,"label":"2","nswdemand":0.4,"nswprice":0.5,"period":0.25}"#, "loop.observation.v1", .invalidValue),
        (#"{"period":0.25,"dow":3,"nswdemand":0.4,"period":0.5,"nswprice":0.5}"#, "loop.observation.v1", .invalidData),
        (#"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"period":0.25"#, "loop.observation.v1", .invalidData),
        (#"{"label":"1"}"#, "loop.outcome.v1", .missingField),
        (#"{"label":"1","requestId":""}"#, "loop.outcome.v1", .missingField),
        (#"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"period":0.25}"#, "loop.observation.v2", .unsupportedVersion),
        (#"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"period":0.25}"#, "com.example.thing", .unknownType),
    ])
    func rejections(_ value: String, _ type: String, _ reason: RejectReason) throws {
        let input = record(value, type: type)
        #expect(fast(input) == nil)
        guard case .failure(let rejection) = general(input) else {
            Issue.record("the general path accepted \(value)")
            return
        }
        #expect(rejection.reason == reason)
    }

    @Test("bad attributes are left to the general path, which rejects them")
    func badAttributes() {
        let data = #"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"period":0.25}"#
        for input in [record(data, time: "2024-13-01T10:00:00Z"), record(data, time: nil), record(data, id: ""),
                      record(data, source: "not a uri")] {
            #expect(fast(input) == nil)
            #expect((try? general(input).get()) == nil)
        }
    }

    @Test("valid inputs outside the common shape are left to the general path, which accepts them", arguments: [
        #"{"dow":3,"nswdemand":0.4,"nswprice":5e-1,"period":0.25}"#,
        #"{"dow":3,"nswdemand":0.40,"nswprice":0.5,"period":0.25}"#,
        #"{"dow":3,"nswdemand":0.4,"nswprice":0.5,"operator":"a\"b","period":0.25}"#,
        #"{"dow":3,"nswdemand":0.00001,"nswprice":0.5,"period":0.25}"#,
    ])
    func generalOnly(_ value: String) throws {
        let input = record(value)
        #expect(fast(input) == nil)
        _ = try general(input).get()
    }

    @Test("the dedupe hash of the header bytes equals the hash of the general path's key")
    func dedupeHash() {
        #expect(DedupeStore.hash(source: Array("/s".utf8), id: Array("x-1".utf8)) == DedupeStore.hash("/s\u{1F}x-1"))
    }

    @Test("the keyed hash is RFC 4231's HMAC-SHA256 (test cases 2, 6 and 7)")
    func keyedHash() {
        #expect(KeyedHash(key: Array("Jefe".utf8)).hex("what do ya want for nothing?")
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        let long = [UInt8](repeating: 0xAA, count: 131)
        #expect(KeyedHash(key: long).hex("Test Using Larger Than Block-Size Key - Hash Key First")
            == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        #expect(KeyedHash(key: long).hex(
            "This is a test using a larger than block-size key and a larger than block-size data. "
                + "The key needs to be hashed before being used by the HMAC algorithm.")
            == "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2")
    }

    @Test("the keyed hash equals OpenSSL's HMAC-SHA256 for every message length across the padding boundaries")
    func keyedHashMatchesOpenSSL() {
        for key in [[], Array("k".utf8), [UInt8](repeating: 0x0B, count: 64), [UInt8](repeating: 0x17, count: 65)] {
            let hasher = KeyedHash(key: key)
            for length in 0...200 {
                let message = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
                let mac = message.withUnsafeBytes { hasher.mac($0) }
                #expect(mac == Digest.hmacSHA256(key: key, message: message), "key \(key.count) bytes, message \(length) bytes")
            }
        }
    }
}

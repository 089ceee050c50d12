import Contracts
import Feedback
import Foundation
import Kafka
import Testing

@Suite("served prediction bytes")
struct ServedPredictionTests {
    /// A prediction with every field set, challengers, a missing feature and awkward doubles.
    static func full(seed: UInt64) -> Prediction {
        var random = SeededRandom(seed: seed)
        let features = (0..<12).map { i in
            FeatureValue(name: "f\(i)", value: i == 3 ? nil : i == 5 ? -1.5e-7 : Double.random(in: -1000...1000, using: &random))
        }
        return Prediction(
            requestId: "req-\(seed)-\"quoted\"", entity: "ent\u{e9}-\(seed)", eventTimeMs: 1_700_000_000_000 + Int64(seed),
            modelVersion: seed % 2 == 0 ? 7 : nil, role: .champion, score: Double.random(in: 0...1, using: &random),
            decision: seed % 3 == 0, route: seed % 2 == 0 ? .auto : .review, reasons: ["review_band"], features: features,
            explanation: [Contribution(feature: "f1", contribution: 0.25)],
            challengers: [ChallengerScore(modelVersion: 8, role: .shadow, score: 0.123456789012345678),
                          ChallengerScore(modelVersion: 9, role: .canary, score: 1)],
            featuresAsOfMs: 1_699_999_999_000, featureAgeSeconds: 1.25, latencyMs: 0.5, traceparent: nil)
    }

    @Test("fields read straight from the bytes equal the full decode, for 200 random predictions")
    func fieldsMatchFullDecode() throws {
        for seed in 0..<200 as Range<UInt64> {
            let original = Self.full(seed: seed)
            let served = try ServedPrediction(bytes: original.bytes)
            #expect(served.requestId == original.requestId && served.entity == original.entity)
            #expect(served.eventTimeMs == original.eventTimeMs && served.modelVersion == original.modelVersion)
            #expect(served.score == original.score && served.route == original.route)
            #expect(served.challengers == original.challengers)
            #expect(served.featureNames == original.features.map(\.name))
            #expect(served.featureValues == original.features.map(\.value), "seed \(seed)")
        }
    }

    @Test("a batch reads every prediction as a prediction read alone does, whether it repeats the first one's feature layout byte for byte or departs from it anywhere in the array")
    func batchLayoutCache() throws {
        let canonical = (0..<20 as Range<UInt64>).map { Self.full(seed: $0).bytes }
        func variant(_ seed: UInt64, _ edit: (String) -> String) -> [UInt8] {
            Array(edit(String(decoding: Self.full(seed: seed).bytes, as: UTF8.self)).utf8)
        }
        let variants = [
            variant(100) { $0.replacingOccurrences(of: #"{"name":"f4","#, with: #"{ "name":"f4","#) },
            variant(101) { $0.replacingOccurrences(of: #""name":"f7""#, with: #""name":"g7""#) },
            variant(102) { $0.replacingOccurrences(of: #"{"name":"f11","#, with: #"{"unit":"kW","name":"f11","#) },
            variant(103) { $0.replacingOccurrences(of: #"{"name":"f2","value":"#, with: #"{"name":"f2","value":null,"was":"#) },
            variant(104) { $0.replacingOccurrences(of: #"{"name":"f11","#, with: #"{"name":"f11","value":1},{"name":"f12","#) },
            variant(105) { $0.replacingOccurrences(of: #"{"name":"f6","value":"#, with: #"{"name":"f6","value":+"#) },
            variant(106) { $0.replacingOccurrences(of: #"{"name":"f0","#, with: #"{"name":"f\u0030","#) },
        ]
        let batch = canonical.prefix(10) + variants + canonical.suffix(10)
        let decoder = InputDecoder(
            predictionsTopic: "p", policy: try JoinPolicy(deadlineMs: hour, retentionMs: hour, positiveLabel: "1"))
        let inputs = decoder.decode(batch.enumerated().map { offset, bytes in
            ConsumedRecord(topic: "p", partition: 0, offset: Int64(offset), key: nil, value: bytes)
        })
        var malformed = 0
        for (bytes, input) in zip(batch, inputs) {
            let alone = Result { () throws(RecordError) in try ServedPrediction(bytes: bytes) }
            switch (input.input, alone) {
            case (.prediction(let read), .success(let expected)):
                #expect(read.featureNames == expected.featureNames && read.featureValues == expected.featureValues)
                #expect(read.requestId == expected.requestId && read.score == expected.score)
            case (.malformed, .failure):
                malformed += 1
            default:
                Issue.record("read differently in a batch: \(input.input) against \(alone)")
            }
        }
        #expect(malformed == 1, "only the value with a plus sign is invalid")
    }

    @Test("the spliced labeled example is byte-identical to LabeledExample.bytes")
    func splicedExampleIsCanonical() throws {
        for seed in 0..<50 as Range<UInt64> {
            let original = Self.full(seed: seed)
            let served = try ServedPrediction(bytes: original.bytes)
            for (label, source, delay, value) in [(true, LabelSource.outcome, 90.0, Double?.some(3.5)),
                                                  (false, .default, 7200, nil), (true, .review, 0.001, -2)] {
                let expected = LabeledExample(prediction: original, label: label, labelSource: source,
                                              labelDelaySeconds: delay, value: value).bytes
                let spliced = served.labeledExampleBytes(label: label, source: source, delaySeconds: delay, value: value)
                #expect(spliced == expected, "seed \(seed): \(String(decoding: spliced, as: UTF8.self))")
            }
        }
    }

    @Test("non-canonical but valid JSON (whitespace, key order) reads the same and splices valid JSON")
    func nonCanonicalInput() throws {
        let original = Self.full(seed: 4)
        let pretty = try JSONSerialization.data(
            withJSONObject: JSONSerialization.jsonObject(with: Data(original.bytes)), options: [.prettyPrinted])
        let served = try ServedPrediction(bytes: Array(pretty))
        #expect(served.requestId == original.requestId && served.featureValues == original.features.map(\.value))
        let example = try LabeledExample(bytes: served.labeledExampleBytes(label: true, source: .outcome, delaySeconds: 1, value: nil))
        #expect(example == LabeledExample(prediction: original, label: true, labelSource: .outcome, labelDelaySeconds: 1))
    }

    @Test("routes and roles are read from their bytes for every case, escaped spellings read the same, unknown ones are errors naming the field")
    func routesAndRoles() throws {
        func bytes(_ route: String, _ role: String, _ challengerRole: String) -> [UInt8] {
            var text = String(decoding: Self.full(seed: 2).bytes, as: UTF8.self)
            text = text.replacingOccurrences(of: "\"route\":\"auto\"", with: "\"route\":\"\(route)\"")
            text = text.replacingOccurrences(of: "\"role\":\"champion\"", with: "\"role\":\"\(role)\"")
            text = text.replacingOccurrences(of: "\"role\":\"shadow\"", with: "\"role\":\"\(challengerRole)\"")
            return Array(text.utf8)
        }
        for route in Route.allCases {
            for role in ModelRole.allCases {
                let served = try ServedPrediction(bytes: bytes(route.rawValue, role.rawValue, role.rawValue))
                #expect(served.route == route)
                #expect(served.challengers.first?.role == role)
            }
        }
        let escaped = try ServedPrediction(bytes: bytes("r\\u0065view", "\\u0063hampion", "c\\u0061nary"))
        #expect(escaped.route == .review && escaped.challengers.first?.role == .canary)
        for (route, role, challengerRole, field) in [
            ("Auto", "champion", "shadow", "route"), ("auto", "champions", "shadow", "role"),
            ("auto", "champion", "shado", "challengers.role"), ("", "champion", "shadow", "route"),
        ] {
            #expect(throws: RecordError.self, "\(field)") { try ServedPrediction(bytes: bytes(route, role, challengerRole)) }
            do {
                _ = try ServedPrediction(bytes: bytes(route, role, challengerRole))
            } catch {
                #expect(error.path == field && error.description.contains("unknown value"), "\(error.description)")
            }
        }
    }

    @Test("bad records are typed errors naming the problem, never a crash")
    func badRecords() throws {
        func rejects(_ bytes: [UInt8], _ fragment: String) {
            do {
                _ = try ServedPrediction(bytes: bytes)
                Issue.record("accepted \(String(decoding: bytes, as: UTF8.self).prefix(80))")
            } catch {
                #expect(error.description.contains(fragment), "\(error.description)")
            }
        }
        rejects(Array("{\"requestId\":\"r\"".utf8), "$")
        rejects(Array("[]".utf8), "$")
        rejects(Array("{}".utf8), "$")
        var noScore = try JSONValue.parse(Self.full(seed: 1).bytes).objectValue!
        noScore["score"] = nil
        rejects(JSONValue.object(noScore).canonicalBytes(), "score")
        var wrongVersion = try JSONValue.parse(Self.full(seed: 1).bytes).objectValue!
        wrongVersion["schemaVersion"] = .int(99)
        rejects(JSONValue.object(wrongVersion).canonicalBytes(), "schemaVersion")
        var badRoute = try JSONValue.parse(Self.full(seed: 1).bytes).objectValue!
        badRoute["route"] = .string("sideways")
        rejects(JSONValue.object(badRoute).canonicalBytes(), "route")
        var badScore = try JSONValue.parse(Self.full(seed: 1).bytes).objectValue!
        badScore["score"] = .string("high")
        rejects(JSONValue.object(badScore).canonicalBytes(), "score")
        rejects(Self.full(seed: 1).bytes.dropLast().map { $0 }, "$")
        rejects(Self.full(seed: 1).bytes + Array(" x".utf8), "$")
    }

    @Test("strings of every length up to 24 read right with a quote, backslash, control character or non-ASCII character at every position, and a raw control character anywhere is an error")
    func stringsAtEveryPosition() throws {
        let specials: [Character] = ["\"", "\\", "\u{01}", "\n", "\u{1f}", " ", "\u{7f}", "\u{e9}", "\u{2028}", "\u{1F600}"]
        for length in 0...24 {
            let plain = String((0..<length).map { Character(Unicode.Scalar(UInt8(ascii: "a") + UInt8($0 % 26))) })
            var texts = [plain]
            for position in 0...length {
                for special in specials {
                    var text = Array(plain)
                    text.insert(special, at: position)
                    texts.append(String(text))
                }
            }
            for text in texts {
                var prediction = Self.full(seed: UInt64(length))
                prediction.requestId = text
                prediction.entity = text + "-entity"
                let served = try ServedPrediction(bytes: prediction.bytes)
                #expect(served.requestId == text && served.entity == text + "-entity", "\(text.debugDescription)")
            }
            // A raw control byte inside the request id (at each position) is refused.
            for position in 0...length {
                var prediction = Self.full(seed: UInt64(length))
                prediction.requestId = plain
                let bytes = prediction.bytes
                let token = Array(("\"requestId\":\"" + plain).utf8)
                let start = try #require(bytes.indices.first { bytes[$0...].starts(with: token) })
                var broken = bytes
                broken.insert(0x01, at: start + token.count - length + position)
                #expect(throws: RecordError.self) { try ServedPrediction(bytes: broken) }
            }
        }
    }
}

/// A small deterministic generator for test data.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9e37_79b9_7f4a_7c15 }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

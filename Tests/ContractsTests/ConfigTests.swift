import Foundation
import Testing
@testable import Contracts

/// The elec2 example every service loads.
let elec2Path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/elec2/loop.yaml").path

/// A small valid config the error tests break one piece at a time.
let minimalYAML = """
name: test
fields:
  price: { type: double, min: 0, max: 1 }
  label: { type: category, values: ["0", "1"] }
label:
  field: label
  positive: "1"
features:
  definitions:
    - { name: price_mean_1h, field: price, aggregation: mean, window: 1h }
"""

/// Parses `yaml` expecting failure and returns the problems.
func problems(_ yaml: String, file: String = "bad.yaml") -> [ConfigError.Problem] {
    do {
        _ = try LoopConfig.parse(yaml: yaml, file: file)
        Issue.record("expected \(file) to be rejected")
        return []
    } catch {
        return error.problems
    }
}

@Suite struct ConfigLoadingTests {
    @Test func elec2ExampleLoads() throws {
        let config = try LoopConfig.load(path: elec2Path)
        #expect(config.name == "elec2")
        #expect(config.topics.prefix == "loop")
        #expect(config.topics.partitions == 4)
        #expect(config.topics.retention == .days(7))
        #expect(config.fields.count == 9)
        #expect(config.fields["dow"] == FieldSpec(kind: .int, required: true, min: 1, max: 7, values: nil, pii: .none))
        #expect(config.fields["operator"]?.pii == .hash)
        #expect(config.fields["label"]?.values == ["0", "1"])
        #expect(config.label == LabelSpec(field: "label", positive: "1", valueField: nil))
        #expect(config.features.definitions.count == 12)
        let ewm = try #require(config.features.definitions.first { $0.name == "nswprice_ewm_6h" })
        #expect(ewm.aggregation == .decayedMean)
        #expect(ewm.halfLife == .hours(6))
        #expect(ewm.window == nil)
        #expect(ewm.eventTypes == ["loop.observation.v1", "loop.score_request.v1"])
        #expect(config.features.definitions[3].window == .hours(24))
        #expect(config.model.features.count == 10)
        #expect(config.model.contextFields.first == "period")
        #expect(config.decision.threshold == 0.5)
        #expect(config.decision.reviewBand == 0.47...0.53)
        #expect(config.decision.fallback == .review)
        #expect(config.feedback.defaultLabel == nil)
        #expect(config.feedback.snapshotInterval == TimeSpan(seconds: 10))
        #expect(config.drift.labelStarvation == .days(1))
        #expect(config.retraining.everyLabels == nil)
        #expect(config.retraining.everyEventTime == .days(7))
        #expect(config.retraining.trainingEventTime == .days(84))
        #expect(config.retraining.gate.metric == .auc)
        #expect(config.retraining.gate.minHoldout == 200)
    }

    @Test func defaultsFillOmittedSections() throws {
        let config = try LoopConfig.parse(yaml: minimalYAML, file: "min.yaml")
        #expect(config.topics.prefix == "loop")
        #expect(config.events.missingTime == .reject)
        #expect(config.events.maxPayloadBytes == 65_536)
        #expect(config.features.eventTypes == ["loop.observation.v1", "loop.score_request.v1"])
        #expect(config.features.definitions[0].eventTypes == config.features.eventTypes)
        #expect(config.model.features == ["price_mean_1h"])
        #expect(config.decision.reviewBand == nil)
        #expect(config.costs.falsePositive == 1)
        #expect(config.retraining.gate.maxCalibrationError == 0.15)
    }

    @Test func topicNamesComeFromThePrefix() throws {
        let topics = Topics(prefix: "acme")
        #expect(topics.all == [
            "acme.events.raw", "acme.events", "acme.events.dlq", "acme.features", "acme.predictions",
            "acme.labeled", "acme.monitoring", "acme.models", "acme.audit",
        ])
        #expect(topics.compacted == ["acme.features", "acme.models"])
        #expect(topics.isCompacted("acme.models"))
        #expect(!topics.isCompacted("acme.events"))
        #expect(try LoopConfig.load(path: elec2Path).topicNames.deadLetters == "loop.events.dlq")
    }

    @Test func unreadableFileIsAProblemNotACrash() {
        #expect(throws: ConfigError.self) { try LoopConfig.load(path: "/nonexistent/loop.yaml") }
    }
}

@Suite struct ConfigErrorTests {
    @Test func unknownKeySuggestsTheClosestOne() throws {
        let found = problems(minimalYAML + "\ntopics:\n  partitons: 3\n")
        let problem = try #require(found.first)
        #expect(found.count == 1)
        #expect(problem.kind == .unknownKey)
        #expect(problem.path == "topics.partitons")
        #expect(problem.line == 12)
        #expect(problem.message.contains("did you mean \"partitions\""))
    }

    @Test func wrongTypeNamesPathAndLine() throws {
        let yaml = minimalYAML.replacingOccurrences(of: "window: 1h", with: "window: 2 hours")
        let problem = try #require(problems(yaml).first)
        #expect(problem.kind == .wrongType)
        #expect(problem.path == "features.definitions[0].window")
        #expect(problem.line == 10)
        #expect(problem.message.contains("time span"))
    }

    @Test func outOfRangeValue() throws {
        let problem = try #require(problems(minimalYAML + "\ndecision:\n  threshold: 1.5\n").first)
        #expect(problem.kind == .outOfRange)
        #expect(problem.path == "decision.threshold")
        #expect(problem.message.contains("1.5"))
    }

    @Test func featureReferencingUndeclaredField() throws {
        let yaml = minimalYAML.replacingOccurrences(of: "field: price,", with: "field: prcie,")
        let problem = try #require(problems(yaml).first)
        #expect(problem.kind == .unknownReference)
        #expect(problem.path == "features.definitions[0].field")
        #expect(problem.message.contains("did you mean \"price\""))
    }

    @Test func modelReferencingUnknownFeature() throws {
        let problem = try #require(problems(minimalYAML + "\nmodel:\n  features: [price_mean_1h, price_mean_2h]\n").first)
        #expect(problem.kind == .unknownReference)
        #expect(problem.path == "model.features[1]")
        #expect(problem.line == 12)
    }

    @Test func reviewBandMustContainTheThreshold() throws {
        let problem = try #require(problems(minimalYAML + "\ndecision:\n  threshold: 0.6\n  reviewBand: [0.4, 0.5]\n").first)
        #expect(problem.kind == .invalidValue)
        #expect(problem.path == "decision.reviewBand")
        #expect(problem.message.contains("must contain the threshold"))
    }

    @Test func aggregationShapeIsChecked() {
        let yaml = minimalYAML
            + "\n    - { name: n, aggregation: count }"
            + "\n    - { name: e, field: price, aggregation: decayed_mean, window: 1h, halfLife: 1h }"
            + "\n    - { name: l, field: label, aggregation: mean, window: 1h }\n"
        let found = problems(yaml)
        #expect(found.map(\.path) == ["features.definitions[1].window", "features.definitions[2].window", "features.definitions[3].field"])
        #expect(found.map(\.kind) == [.missingKey, .invalidValue, .invalidValue])
        #expect(found.map(\.line) == [11, 12, 13])
    }

    @Test func missingRequiredKeysAndAllProblemsAreCollected() {
        let found = problems("""
            fields:
              price: { type: decimal }
            label: { field: price }
            drift: { psi: -1, ks: high }
            """)
        let summary = Set(found.map { "\($0.kind.rawValue) \($0.path)" })
        #expect(summary.isSuperset(of: [
            "missing_key name", "invalid_value fields.price.type", "missing_key label.positive",
            "out_of_range drift.psi", "wrong_type drift.ks",
        ]))
    }

    @Test func yamlSyntaxErrorHasALine() throws {
        let problem = try #require(problems("name: x\nfields: [a, b\nlabel: 1\n").first)
        #expect(problem.kind == .syntax)
        #expect(problem.line != nil)
    }

    @Test func descriptionNamesFileLinePathAndProblem() {
        do {
            _ = try LoopConfig.parse(yaml: minimalYAML + "\ntopics:\n  partitons: 3\n", file: "deploy/loop.yaml")
        } catch {
            #expect(error.description.contains("deploy/loop.yaml:12:3: topics.partitons: unknown key; did you mean \"partitions\"?"))
            #expect(error.description.hasPrefix("deploy/loop.yaml is not a valid loop configuration (1 problem)"))
            return
        }
        Issue.record("expected an error")
    }
}

@Suite struct TimeSpanTests {
    @Test(arguments: ["30s", "30m", "1h", "24h", "7d", "2w", "90m", "84d", "0s", "1000000s"])
    func parsesEveryUnit(text: String) throws {
        let span = try #require(TimeSpan(text))
        #expect(TimeSpan(span.description) == span)
    }

    @Test func formatsWithTheLargestExactUnit() {
        #expect(TimeSpan(seconds: 86_400).description == "1d")
        #expect(TimeSpan("24h")?.description == "1d")
        #expect(TimeSpan("7d")?.description == "1w")
        #expect(TimeSpan("90m")?.description == "90m")
        #expect(TimeSpan("120s")?.description == "2m")
        #expect(TimeSpan(seconds: 0.5).description == "0.5s")
        #expect(TimeSpan("2w")?.seconds == 1_209_600)
    }

    @Test(arguments: ["", "h", "1", "1.5h", "-1h", "1y", "1 h", "1H", "+1h"])
    func rejectsOtherSpellings(text: String) {
        #expect(TimeSpan(text) == nil)
    }

    @Test func roundTripsRandomSpans() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            let span = TimeSpan(seconds: Double(Int.random(in: 0...10_000_000, using: &generator)))
            #expect(TimeSpan(span.description) == span)
        }
    }
}

import Foundation
import Learning
import Testing

@Suite struct TrainingTests {
    @Test func trainingTwiceGivesIdenticalCoefficients() throws {
        let data = TestData.synthetic(n: 3_000, numeric: 5, categorical: true)
        let first = try LogisticRegression.fit(data)
        let second = try LogisticRegression.fit(data)
        #expect(first == second)
        #expect(try first.jsonData() == second.jsonData())
    }

    @Test func recoversTheGeneratingModelsOrdering() throws {
        let data = TestData.synthetic(n: 20_000, numeric: 3, categorical: true)
        let artifact = try LogisticRegression.fit(data, options: TrainingOptions(l2: 1))
        guard case .logisticRegression(let model) = artifact.body else { Issue.record("wrong kind"); return }
        #expect(model.converged)
        let segment = try #require(artifact.schema.features.last)
        // "d" has 0.5% of the rows, below the 1% cut, so it shares the "other" column.
        #expect(segment.kind == .categorical)
        #expect(segment.levels == ["a", "b", "c"])
        let weights = model.coefficients[3]
        #expect(weights.count == 4)
        // Effects a: +0.8, b: -0.5, c: 0, other (= d): +1.5 — the fit keeps their order.
        #expect(weights[1] < weights[2] && weights[2] < weights[0] && weights[0] < weights[3])
    }

    @Test func summariesDescribeTheTrainingData() throws {
        let data = TestData.synthetic(n: 5_000, numeric: 2, categorical: true)
        let artifact = try LogisticRegression.fit(data)
        let summary = artifact.training
        #expect(summary.exampleCount == 5_000)
        #expect(summary.positiveCount == data.labels.filter { $0 }.count)
        let x1 = try #require(summary.features[1].numeric)
        guard case .numeric(let values) = data.columns[1].values else { Issue.record("not numeric"); return }
        #expect(x1.min == values.min() && x1.max == values.max())
        #expect(abs(x1.mean - values.reduce(0, +) / 5_000) < 1e-12)
        #expect(x1.bins.edges.count == 9)
        #expect(abs(x1.bins.proportions.reduce(0, +) - 1) < 1e-12)
        for share in x1.bins.proportions { #expect(abs(share - 0.1) < 0.001) }
        let segment = try #require(summary.features[2].categorical)
        #expect(segment.distinctValues == 4)
        #expect(abs(segment.proportions.reduce(0, +) - 1) < 1e-12)
        #expect(summary.scores.bins.binCount == 10)
    }

    @Test func rejectsBadInputWithTypedErrors() {
        let oneClass = Dataset(columns: [.numeric("x", [1, 2, 3])], labels: [true, true, true])
        #expect(learningErrorCode { _ = try LogisticRegression.fit(oneClass) } == .singleClass)
        let ragged = Dataset(columns: [.numeric("x", [1, 2])], labels: [true, false, true])
        #expect(throws: LearningError(.invalidInput, "column x has 2 values for 3 labels")) {
            try LogisticRegression.fit(ragged)
        }
        let infinite = Dataset(columns: [.numeric("x", [1, .infinity])], labels: [true, false])
        #expect(learningErrorCode { _ = try LogisticRegression.fit(infinite) } == .invalidInput)
        let fine = Dataset(columns: [.numeric("x", [1, 2])], labels: [true, false])
        #expect(learningErrorCode { _ = try LogisticRegression.fit(fine, options: TrainingOptions(l2: 0)) } == .invalidConfiguration)
    }
}

@Suite struct ArtifactTests {
    func artifact() throws -> ModelArtifact {
        try LogisticRegression.fit(TestData.synthetic(n: 2_000, numeric: 3, categorical: true))
    }

    @Test func jsonRoundTripKeepsEverything() throws {
        let original = try artifact()
        let json = try original.jsonData()
        let decoded = try ModelArtifact.decode(json: json)
        #expect(decoded == original)
        #expect(decoded.kind == .logisticRegression)
        #expect(decoded.schema.hash == original.schema.hash)
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(object["kind"] as? String == "logistic_regression")
        #expect(object["schemaVersion"] as? Int == 1)
        #expect(Set(object.keys) == ["kind", "schemaVersion", "schema", "training", "model"])
    }

    @Test func unknownKindIsATypedErrorButItsHeaderStillReads() throws {
        let json = try artifact().jsonData()
        var object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        object["kind"] = "gradient_boosted_trees"
        object["model"] = ["trees": [] as [Any]]
        let trees = try JSONSerialization.data(withJSONObject: object)
        #expect(learningErrorCode { _ = try ModelArtifact.decode(json: trees) } == .unknownModelKind)
        let header = try ModelArtifact.decodeHeader(json: trees)
        #expect(header.kind.rawValue == "gradient_boosted_trees")
        #expect(header.training.exampleCount == 2_000)
    }

    @Test func newerSchemaVersionAndTamperedSchemaAreRejected() throws {
        let json = try artifact().jsonData()
        var object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        object["schemaVersion"] = 2
        let newer = try JSONSerialization.data(withJSONObject: object)
        #expect(learningErrorCode { _ = try ModelArtifact.decode(json: newer) } == .unsupportedSchemaVersion)
        object["schemaVersion"] = 1
        var schema = try #require(object["schema"] as? [String: Any])
        var features = try #require(schema["features"] as? [[String: Any]])
        features[0]["name"] = "renamed"
        schema["features"] = features
        object["schema"] = schema
        let tampered = try JSONSerialization.data(withJSONObject: object)
        #expect(learningErrorCode { _ = try ModelArtifact.decode(json: tampered) } == .malformedArtifact)
        #expect(learningErrorCode { _ = try ModelArtifact.decode(json: Data("not json".utf8)) } == .malformedArtifact)
    }

    @Test func schemaHashDependsOnNamesKindsAndLevels() {
        let base = FeatureSchema(features: [FeatureSpec(name: "x", kind: .numeric), FeatureSpec(name: "c", kind: .categorical, levels: ["a"])])
        let renamed = FeatureSchema(features: [FeatureSpec(name: "y", kind: .numeric), FeatureSpec(name: "c", kind: .categorical, levels: ["a"])])
        let relevelled = FeatureSchema(features: [FeatureSpec(name: "x", kind: .numeric), FeatureSpec(name: "c", kind: .categorical, levels: ["b"])])
        #expect(base.hash.count == 16)
        #expect(base.hash == FeatureSchema(features: base.features).hash)
        #expect(Set([base.hash, renamed.hash, relevelled.hash]).count == 3)
    }
}

@Test("a column constant but for rounding noise keeps scale 1, so later real variation stays bounded")
func nearConstantColumnIsNotBlownUp() throws {
    let n = 400
    let signal = (0..<n).map { Double($0 % 20) / 20 }
    let noisy = (0..<n).map { 0.414912 + ($0 % 2 == 0 ? 1e-17 : -1e-17) + ($0 % 3 == 0 ? 5.5e-17 : 0) }
    let labels = signal.map { $0 > 0.5 }
    let artifact = try LogisticRegression.fit(
        Dataset(columns: [.numeric("signal", signal), .numeric("flat", noisy)], labels: labels))
    let scorer = try LinearScorer(artifact: artifact)
    let score = try scorer.score([0.7, 0.45])
    #expect(score.probability > 0.5 && score.probability < 1, "a flat column moved by 0.035 must not decide alone")
    #expect(abs(score.logit) < 50)
}

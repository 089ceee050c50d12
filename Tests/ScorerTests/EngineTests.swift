import Contracts
import Features
import Foundation
import Learning
import Scorer
import Testing

/// The prediction engine without Kafka: baseline, output control, review band, explanations,
/// canary and shadow shares, and the fast record writer.
@Suite struct EngineTests {
    let config: LoopConfig
    let schema: Features.FeatureSchema
    let layout: RequestVectorLayout
    let requestMs = Int64(Fixtures.t0 * 1000) + 60_000

    init() throws {
        config = try Fixtures.config()
        schema = try Features.FeatureSchema(settings: config.features)
        layout = try RequestVectorLayout(config: config, featureSchema: schema)
    }

    func request(_ id: String, nswprice: Double = 0.5, timeMs: Int64? = nil) -> ScoreRequest {
        ScoreRequest(requestId: id, entity: "NSW", eventTimeMs: timeMs ?? requestMs, context: Fixtures.context(requestId: id, nswprice: nswprice))
    }

    @Test func coldStartAnswersWithTheBaseline() throws {
        let engine = PredictionEngine(layout: layout, policy: config.decision)
        let state = try Fixtures.featureState("NSW", schema: schema)
        let prediction = engine.predict(request("r1"), state: state, models: .baseline)
        #expect(prediction.role == .baseline)
        #expect(prediction.modelVersion == nil)
        #expect(prediction.score == config.decision.baselineScore)
        #expect(prediction.decision == (config.decision.baselineScore >= config.decision.threshold))
        #expect(prediction.route == .auto)
        #expect(prediction.reasons.isEmpty)
        // The vector is still recorded, so the first labels can train the first model.
        #expect(prediction.features.map(\.name) == layout.names)
        #expect(prediction.features.allSatisfy { $0.value != nil })
        #expect(prediction.featuresAsOfMs == requestMs)
        #expect(prediction.featureAgeSeconds == 60)
    }

    @Test func featuresAreEvaluatedAsOfTheRequestTimeWithTheSharedCode() throws {
        let engine = PredictionEngine(layout: layout, policy: config.decision)
        let state = try Fixtures.featureState("NSW", schema: schema)
        let prediction = engine.predict(request("r1"), state: state, models: .baseline)
        let expected = try state.evaluate(asOf: Double(requestMs) / 1000)
        for (i, name) in config.model.features.enumerated() {
            #expect(prediction.features[i].value == expected[schema.featureNames.firstIndex(of: name)!])
        }
        // A request older than the record is evaluated at the record's latest event, and says so.
        let older = engine.predict(request("r2", timeMs: Int64(Fixtures.t0 * 1000) - 600_000), state: state, models: .baseline)
        #expect(older.featuresAsOfMs == Int64(Fixtures.t0 * 1000))
        #expect(older.featureAgeSeconds == -600)
    }

    @Test func missingFeaturesAreRoutedToReviewWithTheirReason() throws {
        let engine = PredictionEngine(layout: layout, policy: config.decision)
        let model = try Fixtures.serving(version: 1, layout: layout, seed: 1)
        let models = ServingModels(revision: 1, champion: model, canary: nil, canaryShare: 0, shadows: [])
        let noState = engine.predict(request("r1"), state: nil, models: models)
        #expect(noState.route == .review)
        #expect(noState.reasons == [PredictionReason.missingFeatures])
        #expect(noState.features.prefix(layout.featureCount).allSatisfy { $0.value == nil })
        #expect(noState.modelVersion == 1)

        var context = Fixtures.context(requestId: "r2")
        context.removeValue(forKey: "vicdemand")
        let noField = engine.predict(
            ScoreRequest(requestId: "r2", entity: "NSW", eventTimeMs: requestMs, context: context),
            state: try Fixtures.featureState("NSW", schema: schema), models: models)
        #expect(noField.reasons == [PredictionReason.missingFeatures])
        #expect(noField.features.first { $0.name == "vicdemand" }?.value == nil)
    }

    @Test func staleFeaturesAreRoutedWithTheirReason() throws {
        let engine = PredictionEngine(layout: layout, policy: config.decision)
        let model = try Fixtures.serving(version: 1, layout: layout, seed: 1)
        let models = ServingModels(revision: 1, champion: model, canary: nil, canaryShare: 0, shadows: [])
        let state = try Fixtures.featureState("NSW", schema: schema)
        let late = Int64(Fixtures.t0 * 1000) + Int64(config.decision.maxFeatureAge.seconds * 1000) + 1000
        let prediction = engine.predict(request("r1", timeMs: late), state: state, models: models)
        #expect(prediction.reasons.contains(PredictionReason.staleFeatures))
        #expect(prediction.route == .review)
        #expect(prediction.featureAgeSeconds! > config.decision.maxFeatureAge.seconds)
    }

    @Test func outOfRangeInputsAreRoutedOrGivenTheFallback() throws {
        let model = try Fixtures.serving(version: 1, layout: layout, seed: 1)
        let models = ServingModels(revision: 1, champion: model, canary: nil, canaryShare: 0, shadows: [])
        let state = try Fixtures.featureState("NSW", schema: schema)
        let engine = PredictionEngine(layout: layout, policy: config.decision)
        let inRange = engine.predict(request("ok"), state: state, models: models)
        #expect(!inRange.reasons.contains(PredictionReason.outOfRange))
        let far = engine.predict(request("far", nswprice: 50), state: state, models: models)
        #expect(far.reasons == [PredictionReason.outOfRange])
        #expect(far.route == .review)

        var negative = config.decision
        negative.fallback = .negative
        let fallback = PredictionEngine(layout: layout, policy: negative).predict(request("far", nswprice: 50), state: state, models: models)
        #expect(fallback.reasons == [PredictionReason.outOfRange])
        #expect(fallback.route == .auto)
        #expect(fallback.decision == false)
        #expect(fallback.score > negative.threshold)
    }

    @Test func scoresInTheReviewBandGoToReview() throws {
        let state = try Fixtures.featureState("NSW", schema: schema)
        var policy = config.decision
        policy.baselineScore = 0.5
        let baseline = PredictionEngine(layout: layout, policy: policy).predict(request("r1"), state: state, models: .baseline)
        #expect(baseline.route == .review)
        #expect(baseline.reasons == [PredictionReason.reviewBand])

        let engine = PredictionEngine(layout: layout, policy: config.decision)
        let model = try Fixtures.serving(version: 1, layout: layout, seed: 3)
        let models = ServingModels(revision: 1, champion: model, canary: nil, canaryShare: 0, shadows: [])
        var inBand = 0
        for price in stride(from: 0.0, through: 1.0, by: 0.01) {
            let prediction = engine.predict(request("p\(price)", nswprice: price), state: state, models: models)
            let band = config.decision.reviewBand!
            #expect((prediction.route == .review) == band.contains(prediction.score))
            #expect(prediction.reasons == (band.contains(prediction.score) ? [PredictionReason.reviewBand] : []))
            #expect(prediction.decision == (prediction.score >= config.decision.threshold))
            if band.contains(prediction.score) { inBand += 1 }
        }
        #expect(inBand > 0)
    }

    @Test func explanationSumsToTheLinearScore() throws {
        var policy = config.decision
        policy.explainTopK = layout.count
        let engine = PredictionEngine(layout: layout, policy: policy)
        let model = try Fixtures.serving(version: 1, layout: layout, seed: 5)
        let models = ServingModels(revision: 1, champion: model, canary: nil, canaryShare: 0, shadows: [])
        let prediction = engine.predict(request("r1", nswprice: 0.9), state: try Fixtures.featureState("NSW", schema: schema), models: models)
        #expect(prediction.explanation.count == layout.count)
        let logit = log(prediction.score / (1 - prediction.score))
        #expect(abs(model.scorer.intercept + prediction.explanation.map(\.contribution).reduce(0, +) - logit) < 1e-9)
        // Largest magnitude first, by feature name.
        let magnitudes = prediction.explanation.map { abs($0.contribution) }
        #expect(magnitudes == magnitudes.sorted(by: >))
        #expect(prediction.explanation.first?.feature == "nswprice")

        let top = PredictionEngine(layout: layout, policy: config.decision).predict(
            request("r1", nswprice: 0.9), state: try Fixtures.featureState("NSW", schema: schema), models: models)
        #expect(top.explanation == Array(prediction.explanation.prefix(config.decision.explainTopK)))
    }

    @Test func shadowsScoreEveryRequestAndTheCanaryDecidesItsShare() throws {
        let engine = PredictionEngine(layout: layout, policy: config.decision)
        let champion = try Fixtures.serving(version: 1, layout: layout, seed: 1)
        let canary = try Fixtures.serving(version: 2, layout: layout, seed: 2)
        let shadow = try Fixtures.serving(version: 3, layout: layout, seed: 3)
        let models = ServingModels(revision: 7, champion: champion, canary: canary, canaryShare: 0.2, shadows: [shadow])
        let state = try Fixtures.featureState("NSW", schema: schema)
        var byCanary = 0
        let n = 10_000
        for i in 0..<n {
            let id = "req-\(i)"
            let prediction = engine.predict(request(id), state: state, models: models)
            #expect(prediction.challengers.contains { $0.role == .shadow && $0.modelVersion == 3 })
            if prediction.role == .canary {
                byCanary += 1
                #expect(prediction.modelVersion == 2)
                #expect(prediction.challengers.contains { $0.role == .champion && $0.modelVersion == 1 })
            } else {
                #expect(prediction.modelVersion == 1)
                #expect(prediction.challengers.contains { $0.role == .canary && $0.modelVersion == 2 })
            }
            // The same requestId always goes the same way.
            #expect((PredictionEngine.canaryBucket(id) < 0.2) == (prediction.role == .canary))
        }
        let share = Double(byCanary) / Double(n)
        #expect(abs(share - 0.2) < 0.015, "canary share \(share)")
    }

    @Test func fastWriterBytesDecodeToTheSamePrediction() throws {
        let engine = PredictionEngine(layout: layout, policy: config.decision)
        let models = ServingModels(
            revision: 2, champion: try Fixtures.serving(version: 1, layout: layout, seed: 1), canary: nil, canaryShare: 0,
            shadows: [try Fixtures.serving(version: 3, layout: layout, seed: 3)])
        var writer = PredictionWriter()
        var predictions = [
            engine.predict(request("plain"), state: try Fixtures.featureState("NSW", schema: schema), models: models),
            engine.predict(request("none"), state: nil, models: .baseline),
        ]
        predictions[0].latencyMs = 0.123
        predictions[1].requestId = "quote\"back\\slash\u{1}tab\tünï"
        predictions[1].traceparent = nil
        // Other feature names (the writer's kept fragments must not be reused), then the first again.
        var renamed = predictions[0]
        renamed.features[0].name = "renamed\"feature"
        renamed.features.removeLast()
        predictions += [renamed, predictions[0]]
        for prediction in predictions {
            let bytes = writer.write(prediction)
            #expect(try Prediction(bytes: bytes) == prediction)
            #expect(bytes == prediction.bytes)
        }
    }

    /// A context field the artifact takes as categorical: the request's string is scored as its
    /// training level (one-hot), an unseen value as "other", and the recorded vector holds the
    /// deciding model's category code, as feedback's drift monitor reads it back.
    @Test func categoricalContextFieldsAreEncodedWithTheArtifactsLevels() throws {
        let config = try Fixtures.config { $0.model.contextFields.append("market") }
        let layout = try RequestVectorLayout(config: config, featureSchema: schema)
        var generator = SeededGenerator(seed: 3)
        let markets = ["north", "south", "east"]
        var columns = [[Double]](repeating: [], count: layout.count - 1)
        var market: [String] = []
        var labels: [Bool] = []
        for _ in 0..<1_500 {
            for j in 0..<columns.count { columns[j].append(generator.uniform()) }
            let level = markets[Int(generator.next() % 3)]
            market.append(level)
            labels.append(generator.uniform() < (level == "north" ? 0.85 : level == "south" ? 0.15 : 0.5))
        }
        let data = Dataset(
            columns: zip(layout.names.dropLast(), columns).map { .numeric($0, $1) } + [.categorical("market", market)], labels: labels)
        let artifact = try LogisticRegression.fit(data)
        let model = try ServingModel(version: 1, artifact: artifact, layout: layout)
        let models = ServingModels(revision: 1, champion: model, canary: nil, canaryShare: 0, shadows: [])
        let engine = PredictionEngine(layout: layout, policy: config.decision)
        let state = try Fixtures.featureState("NSW", schema: schema)
        func predict(_ value: JSONValue?) -> Prediction {
            var context = Fixtures.context(requestId: "c")
            if let value { context["market"] = value }
            return engine.predict(ScoreRequest(requestId: "c", entity: "NSW", eventTimeMs: requestMs, context: context), state: state, models: models)
        }
        let north = predict(.string("north"))
        let south = predict(.string("south"))
        let unseen = predict(.string("west"))
        #expect(north.score > south.score + 0.3)
        // An unseen value is not a missing one (it may still land in the review band).
        #expect([north, south, unseen].allSatisfy { !$0.reasons.contains(PredictionReason.missingFeatures) })
        let marketIndex = artifact.schema.index(of: "market")!
        let levels = artifact.schema.features[marketIndex].levels
        #expect(north.features.last == FeatureValue(name: "market", value: Double(levels.firstIndex(of: "north")!)))
        #expect(unseen.features.last == FeatureValue(name: "market", value: Learning.FeatureSchema.otherCode))
        // The same score as the shared scorer on the artifact's own encoding.
        var vector = north.features.map { $0.value ?? 0 }
        vector[vector.count - 1] = artifact.schema.categoryCode(of: "north", forFeatureAt: marketIndex)
        #expect(abs(try model.scorer.score(vector).probability - north.score) < 1e-12)
        #expect(abs(try LinearScorer(artifact: artifact).scores(for: Dataset(
            columns: zip(layout.names.dropLast(), vector.dropLast()).map { .numeric($0, [$1]) } + [.categorical("market", ["north"])],
            labels: [true]))[0] - north.score) < 1e-12)
        // Missing: routed with its reason.
        let missing = predict(nil)
        #expect(missing.reasons.contains(PredictionReason.missingFeatures))
        #expect(missing.features.last == FeatureValue(name: "market", value: nil))
    }
}

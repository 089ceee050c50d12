import Foundation
import Learning
import Testing

@Suite struct ScorerTests {
    let data = TestData.synthetic(n: 4_000, numeric: 4, categorical: true, seed: 11)

    @Test func contributionsPlusInterceptSumToTheLogit() throws {
        let artifact = try LogisticRegression.fit(data)
        guard case .logisticRegression(let model) = artifact.body else { Issue.record("wrong kind"); return }
        let scorer = try LinearScorer(artifact: artifact)
        var contributions: [Double] = []
        for (row, level) in [(0, "a"), (1, "b"), (2, "zzz-unseen")] {
            var features: [Double] = []
            for column in data.columns.prefix(4) {
                guard case .numeric(let values) = column.values else { continue }
                features.append(values[row])
            }
            features.append(artifact.schema.categoryCode(of: level, forFeatureAt: 4))
            let score = try scorer.score(features, contributions: &contributions)
            #expect(abs(scorer.intercept + contributions.reduce(0, +) - score.logit) < 1e-12)
            #expect(abs(score.probability - 1 / (1 + exp(-score.logit))) < 1e-15)
            // Each contribution is the coefficient times the standardized value, as the artifact defines it.
            for j in 0..<4 {
                let expected = model.coefficients[j][0] * ((features[j] - model.means[j]) / model.scales[j])
                #expect(contributions[j] == expected)
            }
            let column = artifact.schema.features[4].levels.firstIndex(of: level) ?? artifact.schema.features[4].levels.count
            #expect(contributions[4] == model.coefficients[4][column])
        }
    }

    @Test func unsafeBufferScoringMatchesArrayScoringAndBatchScoring() throws {
        let artifact = try LogisticRegression.fit(data)
        let scorer = try LinearScorer(artifact: artifact)
        let batch = try scorer.scores(for: data)
        var features = [Double](repeating: 0, count: 5)
        var contributions = [Double](repeating: 0, count: 5)
        for row in stride(from: 0, to: data.count, by: 97) {
            for j in 0..<4 {
                guard case .numeric(let values) = data.columns[j].values else { continue }
                features[j] = values[row]
            }
            guard case .categorical(let levels) = data.columns[4].values else { continue }
            features[4] = artifact.schema.categoryCode(of: levels[row], forFeatureAt: 4)
            let score = try features.withUnsafeBufferPointer { input in
                try contributions.withUnsafeMutableBufferPointer { output in try scorer.score(input, contributions: output) }
            }
            #expect(score.probability == batch[row])
            #expect(try scorer.score(features).probability == batch[row])
        }
    }

    @Test func wrongLengthIsATypedError() throws {
        let scorer = try LinearScorer(artifact: LogisticRegression.fit(data))
        #expect(learningErrorCode { _ = try scorer.score([1, 2, 3]) } == .invalidInput)
    }

    @Test func topContributionsAreTheLargestByMagnitude() throws {
        let contributions: [Double] = [0.1, -2.0, 0.5, 1.5, -0.5, 3.0, 0.0]
        var indices = [Int](repeating: -1, count: 3)
        let written = contributions.withUnsafeBufferPointer { values in
            indices.withUnsafeMutableBufferPointer { LinearScorer.topContributions(values, k: 3, into: $0) }
        }
        #expect(written == 3)
        #expect(indices == [5, 1, 3])
        // Ties keep the lower index first; k larger than the vector is capped.
        var all = [Int](repeating: -1, count: 10)
        let count = contributions.withUnsafeBufferPointer { values in
            all.withUnsafeMutableBufferPointer { LinearScorer.topContributions(values, k: 10, into: $0) }
        }
        #expect(count == 7)
        #expect(Array(all.prefix(7)) == [5, 1, 3, 2, 4, 0, 6])

        let scorer = try LinearScorer(artifact: LogisticRegression.fit(data))
        let explanation = scorer.explanation([0, -4, 1, 2, 0.5], k: 2)
        #expect(explanation.map(\.feature) == ["x1", "x3"])
        #expect(explanation.map(\.value) == [-4, 2])
    }

    @Test func rangeCheckUsesTrainingZScoresAndBounds() throws {
        let artifact = try LogisticRegression.fit(data)
        let scorer = try LinearScorer(artifact: artifact)
        let x2 = try #require(artifact.training.features[2].numeric)
        var features = artifact.training.features.map { $0.numeric?.mean ?? 0 }
        #expect(scorer.firstOutOfRange(features, maxZScore: 6) == nil)

        features[2] = x2.mean + 7 * x2.std
        let violation = try #require(scorer.firstOutOfRange(features, maxZScore: 6))
        #expect(violation.featureIndex == 2 && violation.reason == .zScore)
        #expect(abs(violation.zScore - 7) < 1e-9)

        features[2] = x2.max + 0.2 * (x2.max - x2.min)
        #expect(scorer.firstOutOfRange(features, maxZScore: 100) == nil)
        #expect(scorer.firstOutOfRange(features, maxZScore: 100, boundsMargin: 0.1)?.reason == .aboveMaximum)
        features[2] = .nan
        #expect(scorer.firstOutOfRange(features, maxZScore: 6)?.reason == .notFinite)
        // A categorical feature is never out of range: unseen values score as "other".
        features[2] = x2.mean
        features[4] = 1_000
        #expect(scorer.firstOutOfRange(features, maxZScore: 6) == nil)
    }
}

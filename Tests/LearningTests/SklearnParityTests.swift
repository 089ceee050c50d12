import Contracts
import Learning
import Testing

/// Our logistic regression against scikit-learn's on the same Elec2 rows, split and regularization
/// (reference written by scripts/make-sklearn-reference.py into Fixtures/SklearnReference.swift).
@Suite struct SklearnParityTests {
    let data: Dataset
    let training: Dataset
    let holdout: Dataset

    init() throws {
        let first = SklearnReference.firstRow
        data = try TestData.elec2(rows: first..<(first + SklearnReference.rows), columns: SklearnReference.features)
        training = data.slice(0..<SklearnReference.trainingRows)
        holdout = data.slice(SklearnReference.trainingRows..<data.count)
    }

    @Test func standardizationMatchesStandardScaler() throws {
        let artifact = try LogisticRegression.fit(training, options: TrainingOptions(l2: SklearnReference.l2))
        guard case .logisticRegression(let model) = artifact.body else { Issue.record("wrong kind"); return }
        for j in SklearnReference.features.indices {
            #expect(abs(model.means[j] - SklearnReference.means[j]) < 1e-12)
            #expect(abs(model.scales[j] - SklearnReference.scales[j]) < 1e-12)
        }
    }

    @Test(arguments: [false, true])
    func coefficientsAndHoldoutAUCMatchScikitLearn(balanced: Bool) throws {
        let options = TrainingOptions(l2: SklearnReference.l2, classWeight: balanced ? .balanced : .none)
        let artifact = try LogisticRegression.fit(training, options: options)
        guard case .logisticRegression(let model) = artifact.body else { Issue.record("wrong kind"); return }
        #expect(model.converged)
        let expected = balanced ? SklearnReference.balancedCoefficients : SklearnReference.coefficients
        let expectedIntercept = balanced ? SklearnReference.balancedIntercept : SklearnReference.intercept
        for j in expected.indices {
            #expect(abs(model.coefficients[j][0] - expected[j]) < 1e-6, "coefficient \(j)")
        }
        #expect(abs(model.intercept - expectedIntercept) < 1e-6)

        let scores = try LinearScorer(artifact: artifact).scores(for: holdout)
        let auc = try #require(Metrics.rocAUC(scores: scores, labels: holdout.labels))
        let expectedAUC = balanced ? SklearnReference.balancedHoldoutAUC : SklearnReference.holdoutAUC
        print("holdout AUC (balanced: \(balanced)): ours \(auc), scikit-learn \(expectedAUC)")
        #expect(abs(auc - expectedAUC) < 0.002)
    }
}

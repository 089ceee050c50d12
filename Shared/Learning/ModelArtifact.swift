import Foundation

/// The family of a model; the artifact's `kind` field.
public struct ModelKind: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    /// A kind by its name in the artifact.
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let logisticRegression = ModelKind(rawValue: "logistic_regression")

    /// The kinds this build can read a body for.
    public static let readable: Set<ModelKind> = [.logisticRegression]

    public var description: String { rawValue }
}

/// The parts of an artifact that every kind shares: what it is, which inputs it takes and what
/// its training data looked like.
///
/// Decoding the header never fails on an unknown `kind`, so a reader that only needs the training
/// baseline (drift detection) can work with any model.
public struct ModelArtifactHeader: Codable, Sendable, Equatable {
    public var kind: ModelKind
    public var schemaVersion: Int
    public var schema: FeatureSchema
    public var training: TrainingSummary

    /// A header from its parts.
    public init(kind: ModelKind, schemaVersion: Int, schema: FeatureSchema, training: TrainingSummary) {
        self.kind = kind
        self.schemaVersion = schemaVersion
        self.schema = schema
        self.training = training
    }
}

/// A fitted logistic regression in standardized space.
///
/// For numeric feature `j` with training mean `μⱼ` and scale `σⱼ` the contribution to the logit is
/// `coefficients[j][0] · (xⱼ − μⱼ) / σⱼ`; for a categorical feature it is the coefficient of the
/// one-hot column its value selects (`coefficients[j][level]`, or the last entry for "other").
/// The logit is `intercept + Σ contributions`.
public struct LogisticRegressionModel: Codable, Sendable, Equatable {
    public var intercept: Double
    /// One array per schema feature: one weight for a numeric feature, `levels.count + 1` for a
    /// categorical one (the last is "other").
    public var coefficients: [[Double]]
    /// Standardization means per schema feature (0 for categorical features).
    public var means: [Double]
    /// Standardization scales per schema feature (the population standard deviation, or 1 where it
    /// is 0, as `StandardScaler`; 1 for categorical features).
    public var scales: [Double]
    /// The L2 strength `λ` the model was fitted with (scikit-learn's `C = 1/λ`).
    public var l2: Double
    public var classWeight: String
    public var iterations: Int
    public var converged: Bool

    /// A model from its fitted parts (see the type for their meaning).
    public init(
        intercept: Double, coefficients: [[Double]], means: [Double], scales: [Double], l2: Double,
        classWeight: String, iterations: Int, converged: Bool
    ) {
        self.intercept = intercept
        self.coefficients = coefficients
        self.means = means
        self.scales = scales
        self.l2 = l2
        self.classWeight = classWeight
        self.iterations = iterations
        self.converged = converged
    }
}

/// A trained model as stored on `loop.models` and on disk (JSON).
///
/// ```json
/// { "kind": "logistic_regression", "schemaVersion": 1,
///   "schema": { "features": [...], "hash": "…" },
///   "training": { "exampleCount": …, "features": [...], "scores": {...} },
///   "model": { …kind-specific body… } }
/// ```
/// Readers decode the common header (``ModelArtifactHeader``) and then the body that `kind`
/// names; a kind this build cannot read is a ``LearningError/Code/unknownModelKind`` error. New
/// kinds add a ``Body`` case and leave the header untouched.
public struct ModelArtifact: Codable, Sendable, Equatable {
    /// The schema version this build writes. Readers accept it and the previous one.
    public static let currentSchemaVersion = 1

    /// The kind-specific part of an artifact.
    public enum Body: Sendable, Equatable {
        case logisticRegression(LogisticRegressionModel)

        /// This body's model family.
        public var kind: ModelKind {
            switch self {
            case .logisticRegression: .logisticRegression
            }
        }
    }

    public var schemaVersion: Int
    public var schema: FeatureSchema
    public var training: TrainingSummary
    public var body: Body

    /// An artifact of the current schema version unless told otherwise.
    public init(schema: FeatureSchema, training: TrainingSummary, body: Body,
                schemaVersion: Int = ModelArtifact.currentSchemaVersion) {
        self.schemaVersion = schemaVersion
        self.schema = schema
        self.training = training
        self.body = body
    }

    /// The artifact's model family, from its body.
    public var kind: ModelKind { body.kind }
    /// The parts every kind shares.
    public var header: ModelArtifactHeader {
        ModelArtifactHeader(kind: kind, schemaVersion: schemaVersion, schema: schema, training: training)
    }

    private enum CodingKeys: String, CodingKey { case kind, schemaVersion, schema, training, model }

    /// Decodes the header, then the body `kind` names; an unknown kind throws ``LearningError/Code/unknownModelKind``.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try container.decode(ModelKind.self, forKey: .kind)
        guard ModelKind.readable.contains(kind) else {
            throw LearningError(.unknownModelKind, "model kind \(kind) is not one this build can read")
        }
        let version = try container.decode(Int.self, forKey: .schemaVersion)
        guard version <= Self.currentSchemaVersion, version >= Self.currentSchemaVersion - 1, version >= 1 else {
            throw LearningError(
                .unsupportedSchemaVersion,
                "artifact schemaVersion \(version) is not \(Self.currentSchemaVersion) or the one before")
        }
        schemaVersion = version
        schema = try container.decode(FeatureSchema.self, forKey: .schema)
        training = try container.decode(TrainingSummary.self, forKey: .training)
        switch kind {
        case .logisticRegression:
            body = .logisticRegression(try container.decode(LogisticRegressionModel.self, forKey: .model))
        default:
            throw LearningError(.unknownModelKind, "model kind \(kind) is not one this build can read")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        try container.encode(schemaVersion, forKey: .schemaVersion)
        try container.encode(schema, forKey: .schema)
        try container.encode(training, forKey: .training)
        switch body {
        case .logisticRegression(let model): try container.encode(model, forKey: .model)
        }
    }

    /// The artifact as JSON with sorted keys (the same artifact always gives the same bytes).
    public func jsonData() throws(LearningError) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return try encoder.encode(self)
        } catch {
            throw LearningError(.malformedArtifact, "the artifact cannot be encoded: \(error)")
        }
    }

    /// Reads an artifact from JSON; every failure is a ``LearningError``.
    public static func decode(json data: Data) throws(LearningError) -> ModelArtifact {
        do {
            return try JSONDecoder().decode(ModelArtifact.self, from: data)
        } catch let error as LearningError {
            throw error
        } catch {
            throw LearningError(.malformedArtifact, "the artifact is not valid JSON of a model: \(error)")
        }
    }

    /// Reads only the common header from JSON, whatever the artifact's kind.
    public static func decodeHeader(json data: Data) throws(LearningError) -> ModelArtifactHeader {
        do {
            return try JSONDecoder().decode(ModelArtifactHeader.self, from: data)
        } catch let error as LearningError {
            throw error
        } catch {
            throw LearningError(.malformedArtifact, "the artifact header cannot be decoded: \(error)")
        }
    }
}

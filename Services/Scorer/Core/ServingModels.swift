import Contracts
import Features
import Foundation
import Kafka
import Learning

// MARK: - Request vector

/// The named inputs every prediction records, in the order `loop.yaml` gives them: the values of
/// `model.features` (evaluated from the entity's feature state) followed by `model.contextFields`
/// (from the score request's data). Models take their inputs from this vector by name.
public struct RequestVectorLayout: Sendable {
    /// Input names: features, then context fields.
    public let names: [String]
    /// How many leading inputs are features (the rest are context fields).
    public let featureCount: Int
    /// The context fields, in order.
    public let contextFields: [String]
    /// For each feature input, its position in ``Features/FeatureSchema/featureNames``.
    let evaluationIndices: [Int]

    /// The layout of `config`, checking that every model feature is defined.
    public init(config: LoopConfig, featureSchema: Features.FeatureSchema) throws(ScorerError) {
        var indices: [Int] = []
        for name in config.model.features {
            guard let index = featureSchema.featureNames.firstIndex(of: name) else {
                throw ScorerError(.invalidConfiguration, "model feature \(name) is not a feature definition in loop.yaml")
            }
            indices.append(index)
        }
        evaluationIndices = indices
        contextFields = config.model.contextFields
        featureCount = indices.count
        names = config.model.features + config.model.contextFields
    }

    /// The number of inputs.
    public var count: Int { names.count }
}

// MARK: - Serving models

/// A model version compiled for serving: its scorer and where each of its inputs comes from in the
/// request vector.
///
/// Categorical inputs are context fields: the request's value (a string, or the text of a number
/// or boolean) is encoded as the artifact's category code — the index of its training level, or
/// ``Learning/FeatureSchema/otherCode`` for any other or missing value — which the scorer one-hot
/// encodes.
public struct ServingModel: Sendable {
    /// The registry version.
    public let version: Int64
    public let scorer: LinearScorer
    /// For each scorer input, its position in the request vector.
    let inputs: [Int]
    /// For each scorer input, the value that stands in for a missing one: the standardization mean,
    /// whose contribution is exactly 0.
    let imputed: [Double]
    /// For each categorical scorer input, the category code of each training level; `nil` for
    /// numeric inputs.
    let categoryCodes: [[String: Double]?]

    /// Compiles `record`'s artifact; every input must be a numeric feature of `layout`.
    public init(record: ModelVersionRecord, layout: RequestVectorLayout) throws(ScorerError) {
        let artifact: ModelArtifact
        do {
            artifact = try ModelArtifact.decode(json: Data(record.artifact.canonicalBytes()))
        } catch {
            throw ScorerError(.unservableModel, "model version \(record.version): \(error.description)")
        }
        try self.init(version: record.version, artifact: artifact, layout: layout)
    }

    /// Compiles `artifact` as version `version`.
    public init(version: Int64, artifact: ModelArtifact, layout: RequestVectorLayout) throws(ScorerError) {
        let scorer: LinearScorer
        do { scorer = try LinearScorer(artifact: artifact) } catch {
            throw ScorerError(.unservableModel, "model version \(version): \(error.description)")
        }
        guard case .logisticRegression(let model) = artifact.body else {
            throw ScorerError(.unservableModel, "model version \(version) is not a linear model")
        }
        var inputs: [Int] = []
        var categoryCodes: [[String: Double]?] = []
        for spec in artifact.schema.features {
            guard let position = layout.names.firstIndex(of: spec.name) else {
                throw ScorerError(
                    .unservableModel,
                    "model version \(version) takes \(spec.name), which is neither a model feature nor a context field in loop.yaml")
            }
            switch spec.kind {
            case .numeric:
                categoryCodes.append(nil)
            case .categorical:
                guard position >= layout.featureCount else {
                    throw ScorerError(
                        .unservableModel,
                        "model version \(version) takes \(spec.name) as categorical, but it is a numeric feature; only context fields can be categorical")
                }
                categoryCodes.append(Dictionary(spec.levels.enumerated().map { ($1, Double($0)) }, uniquingKeysWith: { first, _ in first }))
            }
            inputs.append(position)
        }
        self.version = version
        self.scorer = scorer
        self.inputs = inputs
        self.imputed = model.means
        self.categoryCodes = categoryCodes
    }
}

/// What serves requests at one registry revision: swapped as a whole between batches, so a batch
/// is scored by one consistent set of fully compiled models.
public struct ServingModels: Sendable {
    /// The registry revision this snapshot reflects (0: none yet).
    public let revision: Int64
    /// The deciding model (`nil`: the baseline policy decides).
    public let champion: ServingModel?
    /// The canary and the share of requests it decides.
    public let canary: ServingModel?
    public let canaryShare: Double
    /// Models scored on every request and never acted on.
    public let shadows: [ServingModel]
    /// Request-vector positions that some serving model takes as a categorical input.
    let categoricalPositions: Set<Int>

    /// A snapshot from its parts.
    public init(revision: Int64, champion: ServingModel?, canary: ServingModel?, canaryShare: Double, shadows: [ServingModel]) {
        self.revision = revision
        self.champion = champion
        self.canary = canary
        self.canaryShare = canaryShare
        self.shadows = shadows
        var positions = Set<Int>()
        for model in [champion, canary].compactMap({ $0 }) + shadows {
            for (j, codes) in model.categoryCodes.enumerated() where codes != nil { positions.insert(model.inputs[j]) }
        }
        categoricalPositions = positions
    }

    /// No model: the baseline answers every request.
    public static let baseline = ServingModels(revision: 0, champion: nil, canary: nil, canaryShare: 0, shadows: [])
}

// MARK: - Registry book

/// The state of `loop.models` as read so far: every model version record and the latest registry
/// state, from which ``snapshot()`` builds what serves.
public struct ModelBook: Sendable {
    private var records: [Int64: ModelVersionRecord] = [:]
    private var compiled: [Int64: ServingModel] = [:]
    /// The latest registry state read, if any.
    public private(set) var state: RegistryState?
    private let layout: RequestVectorLayout

    /// An empty book for models taking inputs from `layout`.
    public init(layout: RequestVectorLayout) { self.layout = layout }

    /// Applies one `loop.models` record (a version under `model.<n>` or the state under `registry`).
    /// Returns whether the serving snapshot may have changed. Unknown keys are ignored.
    public mutating func apply(key: String, value: [UInt8]?) throws(RecordError) -> Bool {
        guard let value else { return false }
        if key == RegistryState.key {
            let next = try RegistryState(bytes: value)
            if let current = state, current.revision > next.revision { return false }
            state = next
            return true
        }
        guard key.hasPrefix("model.") else { return false }
        let record = try ModelVersionRecord(bytes: value)
        if let previous = records[record.version], previous.artifact != record.artifact {
            compiled[record.version] = nil
        }
        records[record.version] = record
        return state.map { $0.champion == record.version || $0.canary == record.version || $0.shadows.contains(record.version) } ?? false
    }

    /// The models the registry state names, all compiled; `nil` before any state. Throws if a named
    /// version is absent or cannot be served: the caller keeps serving its previous snapshot.
    public mutating func snapshot() throws(ScorerError) -> ServingModels? {
        guard let state else { return nil }
        func model(_ version: Int64?) throws(ScorerError) -> ServingModel? {
            guard let version else { return nil }
            if let ready = compiled[version] { return ready }
            guard let record = records[version] else {
                throw ScorerError(.unservableModel, "registry revision \(state.revision) names version \(version), which loop.models does not hold")
            }
            let ready = try ServingModel(record: record, layout: layout)
            compiled[version] = ready
            return ready
        }
        let champion = try model(state.champion)
        let canary = try model(state.canary)
        var shadows: [ServingModel] = []
        for version in state.shadows where version != state.champion && version != state.canary {
            if let shadow = try model(version) { shadows.append(shadow) }
        }
        return ServingModels(
            revision: state.revision, champion: champion, canary: canary,
            canaryShare: canary == nil ? 0 : min(1, max(0, state.canaryShare)), shadows: shadows)
    }
}

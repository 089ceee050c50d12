/// Where a model version stands in the registry.
public enum ModelStatus: String, Sendable, Hashable, CaseIterable {
    /// Trained, not yet gated.
    case candidate
    /// Failed the gate; kept for the record.
    case rejected
    /// Passed the gate and decides a share of requests.
    case canary
    /// Shadow-scored on every request, never acted on.
    case shadow
    /// Decides every request not taken by a canary.
    case champion
    /// A former champion or challenger.
    case retired
}

/// The `loop.models` record of one model version, keyed `model.<version>`: its artifact, status and
/// lineage. `loop.models` is compacted and has a single partition, so every reader sees versions
/// before the registry state that names them.
public struct ModelVersionRecord: TopicRecord, Hashable {
    public static let recordName = "model version"
    public static let schemaVersion: SchemaVersion = 1

    /// The Kafka key of version `version`.
    public static func key(version: Int64) -> String { "model.\(version)" }

    public var version: Int64
    public var status: ModelStatus
    /// The version this one was trained to replace (the champion at training time).
    public var parent: Int64?
    /// What started the training run (`every_labels`, `event_time`, `schedule`, `drift_alert`, `manual`, …).
    public var trigger: String
    /// When the version was created, milliseconds since the epoch (wall clock).
    public var createdAtMs: Int64
    /// Why the gate accepted or rejected it, and other status notes.
    public var reasons: [String]
    /// Training data range, example count, class balance, hyper-parameters, holdout metrics of
    /// candidate and champion, feature schema hash: free-form but documented by the retrainer.
    public var lineage: JSONValue
    /// The model artifact (the Learning module's format: `kind`, `schemaVersion`, schema, training summaries, body).
    public var artifact: JSONValue
    /// The generated model card (Markdown).
    public var card: String

    public init(
        version: Int64, status: ModelStatus, parent: Int64?, trigger: String, createdAtMs: Int64, reasons: [String],
        lineage: JSONValue, artifact: JSONValue, card: String
    ) {
        self.version = version
        self.status = status
        self.parent = parent
        self.trigger = trigger
        self.createdAtMs = createdAtMs
        self.reasons = reasons
        self.lineage = lineage
        self.artifact = artifact
        self.card = card
    }

    public var json: JSONValue {
        .object([
            "schemaVersion": .int(Int64(Self.schemaVersion.number)),
            "version": .int(version),
            "status": .string(status.rawValue),
            "parent": JSONValue(parent),
            "trigger": .string(trigger),
            "createdAtMs": .int(createdAtMs),
            "reasons": .array(reasons.map { .string($0) }),
            "lineage": lineage,
            "artifact": artifact,
            "card": .string(card),
        ])
    }

    public init(reading r: RecordReader) throws(RecordError) {
        version = try r.int("version")
        status = try r.choice("status", ModelStatus.self)
        parent = try r.optionalInt("parent")
        trigger = try r.string("trigger")
        createdAtMs = try r.int("createdAtMs")
        reasons = try r.strings("reasons")
        lineage = r.optional("lineage") ?? .object([:])
        artifact = try r.value("artifact")
        card = try r.optionalString("card") ?? ""
    }
}

/// The `loop.models` record keyed ``RegistryState/key``: which versions serve, as one atomic state.
/// A promotion or rollback is one new record of this key.
public struct RegistryState: TopicRecord, Hashable {
    public static let recordName = "registry state"
    public static let schemaVersion: SchemaVersion = 1
    /// The Kafka key of the registry state.
    public static let key = "registry"

    /// The version deciding requests (`nil`: none yet, the baseline policy answers).
    public var champion: Int64?
    /// The canary and the share of requests it decides, chosen by a stable hash of `requestId`.
    public var canary: Int64?
    public var canaryShare: Double
    /// Versions shadow-scored on every request.
    public var shadows: [Int64]
    /// Earlier champions, newest last: a rollback restores the last one.
    public var history: [Int64]
    /// Increases with every change, so readers can tell states apart.
    public var revision: Int64

    public init(champion: Int64?, canary: Int64?, canaryShare: Double, shadows: [Int64], history: [Int64], revision: Int64) {
        self.champion = champion
        self.canary = canary
        self.canaryShare = canaryShare
        self.shadows = shadows
        self.history = history
        self.revision = revision
    }

    /// The empty registry: no model, the baseline answers.
    public static let empty = RegistryState(champion: nil, canary: nil, canaryShare: 0, shadows: [], history: [], revision: 0)

    public var json: JSONValue {
        .object([
            "schemaVersion": .int(Int64(Self.schemaVersion.number)),
            "champion": JSONValue(champion),
            "canary": JSONValue(canary),
            "canaryShare": JSONValue(canaryShare),
            "shadows": .array(shadows.map { .int($0) }),
            "history": .array(history.map { .int($0) }),
            "revision": .int(revision),
        ])
    }

    public init(reading r: RecordReader) throws(RecordError) {
        champion = try r.optionalInt("champion")
        canary = try r.optionalInt("canary")
        canaryShare = try r.optionalDouble("canaryShare") ?? 0
        shadows = try Self.versions(r, "shadows")
        history = try Self.versions(r, "history")
        revision = try r.int("revision")
    }

    private static func versions(_ r: RecordReader, _ key: String) throws(RecordError) -> [Int64] {
        guard let value = r.optional(key) else { return [] }
        guard let array = value.arrayValue else { throw r.fail(key, "expected an array of versions") }
        var versions: [Int64] = []
        for element in array {
            guard let version = element.int64Value else { throw r.fail(key, "expected integer versions") }
            versions.append(version)
        }
        return versions
    }
}

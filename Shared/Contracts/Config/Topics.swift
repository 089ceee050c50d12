/// The topic names of one deployment, derived from ``TopicSettings/prefix``.
public struct Topics: Sendable, Hashable {
    /// The prefix, e.g. `loop`.
    public let prefix: String

    public init(prefix: String) { self.prefix = prefix }

    /// Raw input from existing systems; ingest validates it.
    public var rawEvents: String { "\(prefix).events.raw" }
    /// Validated, normalized, redacted events.
    public var events: String { "\(prefix).events" }
    /// Rejected input with a reason.
    public var deadLetters: String { "\(prefix).events.dlq" }
    /// Compacted: entity → feature vector.
    public var features: String { "\(prefix).features" }
    /// Every scored request.
    public var predictions: String { "\(prefix).predictions" }
    /// Predictions joined with their outcomes.
    public var labeled: String { "\(prefix).labeled" }
    /// Quality, drift and alerts.
    public var monitoring: String { "\(prefix).monitoring" }
    /// Compacted: model artifacts and registry events.
    public var models: String { "\(prefix).models" }
    /// Who did what when.
    public var audit: String { "\(prefix).audit" }

    /// Every topic, in the order of the design's topic map.
    public var all: [String] { [rawEvents, events, deadLetters, features, predictions, labeled, monitoring, models, audit] }

    /// The log-compacted topics (latest value per key): ``features`` and ``models``.
    public var compacted: Set<String> { [features, models] }

    /// Whether `topic` is log-compacted rather than deleted after the retention.
    public func isCompacted(_ topic: String) -> Bool { compacted.contains(topic) }
}

extension TopicSettings {
    /// The topic names under this prefix.
    public var names: Topics { Topics(prefix: prefix) }
}

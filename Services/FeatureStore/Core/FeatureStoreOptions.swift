import Contracts
import ServiceKit

/// How the feature-store runs, beyond `loop.yaml`: where its state lives, its consumer group and
/// its batching. Validated once by ``validate()``.
public struct FeatureStoreOptions: Sendable, Equatable {
    /// Directory of the per-partition SQLite files.
    public var stateDirectory: String
    /// The consumer group of `loop.events`; instances with the same group split the partitions.
    public var groupID: String
    /// Most input records applied and published as one batch.
    public var batchSize: Int
    /// Longest wait to fill a batch.
    public var batchWait: Duration
    /// Point-in-time history keeps at most one snapshot per entity per this much event time
    /// (see ``FeatureQueries/values(of:asOf:)`` for what a read as of a past time returns).
    public var historyInterval: TimeSpan
    /// Most batches being written or published while the next batch is queued.
    public var maxInFlightBatches: Int
    /// How often (wall clock) history older than `features.historyRetention` is deleted.
    public var pruneInterval: Duration
    /// Consumer session timeout (a first join on Tansu takes about half of it).
    public var sessionTimeout: Duration
    /// Most decoded entity states kept in memory per partition, so entities changed again soon
    /// skip the SQLite read and the decoding (0 turns the cache off). A state takes about 1 KB
    /// plus 40 bytes per window bucket statistic.
    public var stateCacheEntities: Int
    /// Threads that write the partitions of a batch at the same time (one SQLite transaction
    /// each; a partition always on the same thread); 0 means one per core.
    public var writeLanes: Int

    /// Options with defaults: state under `stateDirectory`, group `<prefix>.feature-store`.
    public init(
        stateDirectory: String, groupID: String, batchSize: Int = 5000, batchWait: Duration = .milliseconds(50),
        historyInterval: TimeSpan = TimeSpan(seconds: 3600), maxInFlightBatches: Int = 2,
        pruneInterval: Duration = .seconds(60), sessionTimeout: Duration = .seconds(6), stateCacheEntities: Int = 50_000,
        writeLanes: Int = 0
    ) {
        self.stateDirectory = stateDirectory
        self.groupID = groupID
        self.batchSize = batchSize
        self.batchWait = batchWait
        self.historyInterval = historyInterval
        self.maxInFlightBatches = maxInFlightBatches
        self.pruneInterval = pruneInterval
        self.sessionTimeout = sessionTimeout
        self.stateCacheEntities = stateCacheEntities
        self.writeLanes = writeLanes
    }

    /// Refuses options that cannot work.
    public func validate() throws(FeatureStoreError) {
        guard !stateDirectory.isEmpty else { throw FeatureStoreError(.invalidConfiguration, "the state directory is empty") }
        guard !groupID.isEmpty else { throw FeatureStoreError(.invalidConfiguration, "the consumer group is empty") }
        guard (1...100_000).contains(batchSize) else {
            throw FeatureStoreError(.invalidConfiguration, "batch size \(batchSize) is not within 1...100000")
        }
        guard (1...64).contains(maxInFlightBatches) else {
            throw FeatureStoreError(.invalidConfiguration, "in-flight batches \(maxInFlightBatches) is not within 1...64")
        }
        guard (0...10_000_000).contains(stateCacheEntities) else {
            throw FeatureStoreError(.invalidConfiguration, "state cache size \(stateCacheEntities) is not within 0...10000000")
        }
        guard (0...64).contains(writeLanes) else {
            throw FeatureStoreError(.invalidConfiguration, "write lanes \(writeLanes) is not within 0...64")
        }
        guard batchWait > .zero, pruneInterval > .zero, sessionTimeout > .zero else {
            throw FeatureStoreError(.invalidConfiguration, "batch wait, prune interval and session timeout must be positive")
        }
        guard historyInterval.seconds.isFinite, historyInterval.seconds >= 0.001 else {
            throw FeatureStoreError(.invalidConfiguration, "history interval \(historyInterval) must be at least 1 ms")
        }
    }

    /// The consumer group used when none is configured: `<topic prefix>.feature-store`.
    public static func defaultGroup(for config: LoopConfig) -> String { "\(config.topics.prefix).feature-store" }
}

/// The feature-store's own settings (env `LOOP_<NAME>`, flag `--<name>`).
public enum FeatureStoreSettings {
    /// `LOOP_GROUP`: the consumer group; empty means `<topic prefix>.feature-store`.
    public static let group = Setting.string(
        "group", default: "", valueName: "<group>",
        help: "Consumer group of loop.events; empty means <topic prefix>.feature-store.")
    /// `LOOP_BATCH_SIZE`.
    public static let batchSize = Setting.integer(
        "batch-size", default: 5000, range: 1...100_000, help: "Most input events applied and published as one batch.")
    /// `LOOP_BATCH_WAIT_MS`.
    public static let batchWaitMilliseconds = Setting.integer(
        "batch-wait-ms", default: 50, range: 1...10_000, valueName: "<ms>", help: "Longest wait to fill a batch.")
    /// `LOOP_HISTORY_INTERVAL_SECONDS`.
    public static let historyIntervalSeconds = Setting.number(
        "history-interval-seconds", default: 3600, range: 0.001...86_400, valueName: "<seconds>",
        help: "Point-in-time history keeps at most one snapshot per entity per this much event time.")

    /// `LOOP_STATE_CACHE_ENTITIES`.
    public static let stateCacheEntities = Setting.integer(
        "state-cache-entities", default: 50_000, range: 0...10_000_000, valueName: "<n>",
        help: "Most decoded entity states kept in memory per partition (0: read every state from SQLite).")

    /// `LOOP_WRITE_LANES`.
    public static let writeLanes = Setting.integer(
        "write-lanes", default: 0, range: 0...64, valueName: "<n>",
        help: "Threads writing the partitions of a batch at the same time (0: one per core).")

    /// Every feature-store setting.
    public static let all: [any SettingDeclaration] = [
        group, batchSize, batchWaitMilliseconds, historyIntervalSeconds, stateCacheEntities, writeLanes]
}

import Contracts
import Foundation
import Learning
import Synchronization

/// What the monitor measures and when it alerts; validated once.
public struct MonitorSettings: Sendable, Equatable {
    /// Sliding quality (and drift) windows: the last `windowCount` events, and the last `windowSeconds` of event time.
    public var windowCount: Int
    public var windowSeconds: Double
    /// Scores at or above it are decided positive.
    public var threshold: Double
    public var costs: DecisionCosts
    public var drift: DriftThresholds
    /// Event-time length of the chunks that label-free estimates (CBPE) are made for.
    public var chunkSeconds: Double
    /// Windows with fewer events than this raise no drift or performance alert.
    public var minimumSamples: Int
    /// Scores kept per estimation chunk (a uniform sample beyond that).
    public var chunkSample: Int = 5000
    /// Estimation chunks kept per model version.
    public var chunksKept: Int = 24
    /// Points of quality history kept per model version for the dashboard.
    public var historyPoints: Int = 240

    public init(
        windowCount: Int, windowSeconds: Double, threshold: Double, costs: DecisionCosts, drift: DriftThresholds,
        chunkSeconds: Double, minimumSamples: Int
    ) throws(FeedbackError) {
        guard windowCount >= 1, windowSeconds > 0, chunkSeconds > 0, minimumSamples >= 1 else {
            throw FeedbackError(.invalidConfiguration, "monitoring windows, chunks and minimum samples must be positive")
        }
        self.windowCount = windowCount
        self.windowSeconds = windowSeconds
        self.threshold = threshold
        self.costs = costs
        self.drift = drift
        self.chunkSeconds = chunkSeconds
        self.minimumSamples = minimumSamples
    }

    /// The settings `loop.yaml` describes.
    public init(config: LoopConfig, chunkSeconds: Double, minimumSamples: Int) throws(FeedbackError) {
        try self.init(
            windowCount: config.feedback.windowCount, windowSeconds: config.feedback.windowTime.seconds,
            threshold: config.decision.threshold, costs: DecisionCosts(config.costs), drift: config.drift,
            chunkSeconds: chunkSeconds, minimumSamples: minimumSamples)
    }
}

/// Drift of one feature (or of the score) against a model's training baseline.
public struct FeatureDrift: Sendable, Equatable {
    public var feature: String
    public var count: Int
    public var psi: Double
    /// Binned KS statistic (numeric features and the score).
    public var ks: Double?
    /// Chi-squared p-value (categorical features).
    public var chiSquaredPValue: Double?
}

/// The label-free estimate of one event-time chunk, and its error once labels arrived.
public struct ChunkEstimate: Sendable, Equatable {
    public var startMs: Int64
    public var predictions: Int
    public var labeled: Int
    public var estimatedAUC: Double?
    public var estimatedAccuracy: Double
    public var actualAUC: Double?
    public var actualAccuracy: Double?
    /// `estimatedAUC − actualAUC` once enough labels arrived.
    public var aucError: Double?
    public var accuracyError: Double?

    /// The share of the chunk's predictions that have labels.
    public var labeledShare: Double { predictions == 0 ? 0 : Double(labeled) / Double(predictions) }
}

/// A point of a version's quality history (for the dashboard).
public struct QualityPoint: Sendable, Equatable {
    public var eventTimeMs: Int64
    public var countAUC: Double?
    public var timeAUC: Double?
    public var estimatedAUC: Double?
}

/// Everything known about one model version at a snapshot.
public struct VersionReport: Sendable {
    public var version: Int64?
    public var countWindow: QualityReport
    public var timeWindow: QualityReport
    public var drift: [FeatureDrift]
    public var scoreDrift: FeatureDrift?
    public var chunks: [ChunkEstimate]
    public var referenceAUC: Double?
    public var history: [QualityPoint]
}

/// One snapshot of the monitor: per-version reports, the records to publish and the alert changes.
public struct MonitorSnapshot: Sendable {
    public var eventTimeMs: Int64
    public var versions: [VersionReport]
    /// One `snapshot` record per version.
    public var records: [MonitoringRecord]
    /// Alerts that opened or resolved since the previous snapshot.
    public var alertChanges: [MonitoringRecord]
    /// Alerts open after this snapshot.
    public var openAlerts: [MonitoringRecord]
    /// Label delay: counts per bin of ``Monitor/labelDelayEdges``.
    public var labelDelayCounts: [Int]
    /// Champion changes seen on `loop.models`: (event time, new champion).
    public var promotions: [(eventTimeMs: Int64, version: Int64)]
    public var champion: Int64?
    /// The join counters and review queue size the snapshot was taken with.
    public var counters: JoinCounters
    public var reviewQueue: Int
}

/// Live quality per model version (the deciding model and every challenger, on the same labels)
/// over count and event-time windows, drift against each version's training baseline, label-free
/// estimates per event-time chunk and de-duplicated alerts. Thread-safe; fed by the join loop.
public final class Monitor: Sendable {
    /// Upper edges (seconds) of the label-delay bins: 1m, 5m, 15m, 1h, 6h, 1d, 7d, then more.
    public static let labelDelayEdges: [Double] = [60, 300, 900, 3600, 21_600, 86_400, 604_800]

    public let settings: MonitorSettings
    private let state: Mutex<MonitorState>
    private let last = Mutex<MonitorSnapshot?>(nil)

    /// The latest snapshot taken, if any (what the dashboard shows).
    public var latest: MonitorSnapshot? { last.withLock { $0 } }

    /// An empty monitor; open alerts restored from a previous run stay open until resolved.
    public init(settings: MonitorSettings, openAlerts: [MonitoringRecord] = []) throws(FeedbackError) {
        do {
            _ = try QualityWindow(.init(span: .count(settings.windowCount), threshold: settings.threshold))
        } catch {
            throw FeedbackError(.invalidConfiguration, "invalid quality window: \(error)")
        }
        self.settings = settings
        var initial = MonitorState()
        initial.alerts = AlertBook(open: openAlerts)
        state = Mutex(initial)
    }

    // MARK: - Feeding

    /// Counts new predictions into drift and label-free estimates of every version that scored them.
    public func observe(predictions: [ServedPrediction]) {
        guard !predictions.isEmpty else { return }
        state.withLock { state in
            for p in predictions {
                observe(&state, eventTimeMs: p.eventTimeMs, modelVersion: p.modelVersion, score: p.score,
                        challengers: p.challengers, names: p.featureNames, values: p.featureValues)
            }
        }
    }

    /// Counts full prediction records into drift and label-free estimates, like the served form.
    public func observe(predictions: [Prediction]) {
        guard !predictions.isEmpty else { return }
        state.withLock { state in
            for p in predictions {
                observe(&state, eventTimeMs: p.eventTimeMs, modelVersion: p.modelVersion, score: p.score,
                        challengers: p.challengers, names: p.features.map(\.name), values: p.features.map(\.value))
            }
        }
    }

    private func observe(
        _ state: inout MonitorState, eventTimeMs: Int64, modelVersion: Int64?, score: Double, challengers: [ChallengerScore],
        names: [String], values: [Double?]
    ) {
        state.maxEventMs = max(state.maxEventMs ?? eventTimeMs, eventTimeMs)
        if state.firstPredictionMs == nil { state.firstPredictionMs = eventTimeMs }
        state.version(modelVersion, settings).observe(
            eventTimeMs: eventTimeMs, names: names, values: values, score: score, settings: settings)
        for challenger in challengers {
            state.version(challenger.modelVersion, settings).observe(
                eventTimeMs: eventTimeMs, names: names, values: values, score: challenger.score, settings: settings)
        }
    }

    /// Counts labeled examples into the quality windows of the deciding version and every challenger.
    public func observe(labeled: [JoinedExample]) {
        guard !labeled.isEmpty else { return }
        state.withLock { state in
            for e in labeled {
                observe(&state, eventTimeMs: e.eventTimeMs, delaySeconds: e.labelDelaySeconds, source: e.labelSource,
                        label: e.label, modelVersion: e.modelVersion, score: e.score, challengers: e.challengers)
            }
        }
    }

    /// Counts full labeled example records.
    public func observe(labeled: [LabeledExample]) {
        guard !labeled.isEmpty else { return }
        state.withLock { state in
            for e in labeled {
                observe(&state, eventTimeMs: e.eventTimeMs, delaySeconds: e.labelDelaySeconds, source: e.labelSource,
                        label: e.label, modelVersion: e.modelVersion, score: e.score, challengers: e.challengers)
            }
        }
    }

    private func observe(
        _ state: inout MonitorState, eventTimeMs: Int64, delaySeconds: Double, source: LabelSource, label: Bool,
        modelVersion: Int64?, score: Double, challengers: [ChallengerScore]
    ) {
        let time = Double(eventTimeMs) / 1000
        let labelTimeMs = eventTimeMs + Int64(delaySeconds * 1000)
        state.maxEventMs = max(state.maxEventMs ?? labelTimeMs, labelTimeMs)
        if source != .default {
            state.lastLabelMs = max(state.lastLabelMs ?? labelTimeMs, labelTimeMs)
            state.labelDelays[Self.delayBin(delaySeconds)] += 1
        }
        state.version(modelVersion, settings).observe(
            label: label, score: score, eventTime: time, eventTimeMs: eventTimeMs, settings: settings)
        for challenger in challengers {
            state.version(challenger.modelVersion, settings).observe(
                label: label, score: challenger.score, eventTime: time, eventTimeMs: eventTimeMs, settings: settings)
        }
    }

    /// Moves the event-time clock (time windows and label starvation) to `eventTimeMs`.
    public func advance(to eventTimeMs: Int64) {
        state.withLock { state in
            state.maxEventMs = max(state.maxEventMs ?? eventTimeMs, eventTimeMs)
        }
    }

    /// Registers a model version from `loop.models`: its training baseline for drift and its holdout
    /// AUC (if the lineage names one) as the reference for performance alerts.
    public func register(model record: ModelVersionRecord) {
        let header = try? ModelArtifact.decodeHeader(json: Data(record.artifact.canonicalBytes()))
        let reference = Self.referenceAUC(in: record.lineage)
        state.withLock { state in
            let monitor = state.version(record.version, settings)
            if let header, monitor.drift == nil {
                monitor.drift = DriftTracker(header: header, windowCount: settings.windowCount)
            }
            if let reference { monitor.referenceAUC = reference }
        }
    }

    /// Registers the registry state: a new champion is a promotion marker.
    public func register(registry: RegistryState) {
        state.withLock { state in
            if let champion = registry.champion, champion != state.champion {
                state.promotions.append((state.maxEventMs ?? 0, champion))
                if state.promotions.count > 100 { state.promotions.removeFirst() }
            }
            state.champion = registry.champion
        }
    }

    /// The version's own holdout AUC, where the retrainer's lineage keeps it: `holdout.candidate.auc`.
    static func referenceAUC(in lineage: JSONValue) -> Double? {
        lineage["holdout"]?["candidate"]?["auc"]?.doubleValue
    }

    static func delayBin(_ seconds: Double) -> Int {
        labelDelayEdges.firstIndex { seconds <= $0 } ?? labelDelayEdges.count
    }

    // MARK: - Snapshots

    /// Reports every version, evaluates the alert conditions and returns the records to publish.
    /// Alerts change state once per condition: opened when it first holds, resolved when it stops.
    public func snapshot(counters: JoinCounters, reviewQueue: Int) -> MonitorSnapshot {
        let snapshot = takeSnapshot(counters: counters, reviewQueue: reviewQueue)
        last.withLock { $0 = snapshot }
        return snapshot
    }

    private func takeSnapshot(counters: JoinCounters, reviewQueue: Int) -> MonitorSnapshot {
        state.withLock { state in
            let now = state.maxEventMs ?? 0
            var reports: [VersionReport] = []
            var conditions: [AlertCondition] = []
            for key in state.versions.keys.sorted(by: { ($0 ?? -1) < ($1 ?? -1) }) {
                guard let monitor = state.versions[key] else { continue }
                monitor.advance(to: Double(now) / 1000)
                let report = monitor.report(version: key, eventTimeMs: now, settings: settings)
                reports.append(report)
                conditions += AlertCondition.evaluate(report, settings: settings)
            }
            if let since = state.lastLabelMs ?? state.firstPredictionMs {
                let starvedFor = Double(now - since) / 1000
                conditions.append(AlertCondition(
                    kind: .labelStarvation, version: nil, feature: nil, value: starvedFor,
                    threshold: settings.drift.labelStarvation.seconds,
                    firing: starvedFor > settings.drift.labelStarvation.seconds))
            }
            let changes = state.alerts.evaluate(conditions, eventTimeMs: now)
            let extra = Self.commonMetrics(counters: counters, reviewQueue: reviewQueue, delays: state.labelDelays)
            let records = reports.map { report in
                MonitoringRecord(kind: .snapshot, modelVersion: report.version, eventTimeMs: now,
                                 metrics: .object(JSONObject(Self.metrics(of: report) + extra)))
            }
            return MonitorSnapshot(
                eventTimeMs: now, versions: reports, records: records, alertChanges: changes,
                openAlerts: state.alerts.open.values.sorted { ($0.alertId ?? "") < ($1.alertId ?? "") },
                labelDelayCounts: state.labelDelays, promotions: state.promotions, champion: state.champion,
                counters: counters, reviewQueue: reviewQueue)
        }
    }

    /// A report's figures by name, as `loop.monitoring` and the gauges carry them.
    public static func metrics(of report: VersionReport) -> [(String, JSONValue)] {
        var figures: [(String, JSONValue)] = []
        for (name, window) in [("count", report.countWindow), ("time", report.timeWindow)] {
            figures += [
                ("\(name).n", .int(Int64(window.count))), ("\(name).auc", JSONValue(window.auc)),
                ("\(name).logLoss", JSONValue(window.logLoss)), ("\(name).brier", JSONValue(window.brier)),
                ("\(name).accuracy", JSONValue(window.accuracy)),
                ("\(name).ece", JSONValue(window.expectedCalibrationError)),
                ("\(name).positiveRate", JSONValue(window.positiveRate)), ("\(name).meanCost", JSONValue(window.meanCost)),
                ("\(name).reliability", .array(window.calibration.bins.map {
                    .object(["meanScore": JSONValue($0.meanScore), "positiveRate": JSONValue($0.positiveRate),
                             "count": .int(Int64($0.count))])
                })),
            ]
        }
        for drift in report.drift {
            figures.append(("psi.\(drift.feature)", JSONValue(drift.psi)))
            if let ks = drift.ks { figures.append(("ks.\(drift.feature)", JSONValue(ks))) }
            if let p = drift.chiSquaredPValue { figures.append(("chi2p.\(drift.feature)", JSONValue(p))) }
        }
        if let score = report.scoreDrift {
            figures.append(("psi.score", JSONValue(score.psi)))
            figures.append(("ks.score", JSONValue(score.ks)))
        }
        if let latest = report.chunks.last {
            figures += [
                ("cbpe.chunkStartMs", .int(latest.startMs)), ("cbpe.auc", JSONValue(latest.estimatedAUC)),
                ("cbpe.accuracy", JSONValue(latest.estimatedAccuracy)), ("cbpe.labeledShare", JSONValue(latest.labeledShare)),
            ]
        }
        if let judged = report.chunks.last(where: { $0.aucError != nil || $0.accuracyError != nil }) {
            figures += [("cbpe.aucError", JSONValue(judged.aucError)), ("cbpe.accuracyError", JSONValue(judged.accuracyError))]
        }
        figures.append(("referenceAUC", JSONValue(report.referenceAUC)))
        return figures
    }

    static func commonMetrics(counters: JoinCounters, reviewQueue: Int, delays: [Int]) -> [(String, JSONValue)] {
        var figures = JoinCounters.fields.map { ("join.\($0.name)", JSONValue.int(Int64(counters[keyPath: $0.path]))) }
        figures.append(("reviewQueue", .int(Int64(reviewQueue))))
        figures.append(("reviewerAgreement", JSONValue(counters.reviewerAgreement)))
        figures.append(("labelDelay.counts", .array(delays.map { .int(Int64($0)) })))
        return figures
    }
}

// MARK: - State

struct MonitorState: Sendable {
    var versions: [Int64?: VersionMonitor] = [:]
    var maxEventMs: Int64?
    var firstPredictionMs: Int64?
    var lastLabelMs: Int64?
    var labelDelays = [Int](repeating: 0, count: Monitor.labelDelayEdges.count + 1)
    var alerts = AlertBook()
    var champion: Int64?
    var promotions: [(Int64, Int64)] = []

    mutating func version(_ key: Int64?, _ settings: MonitorSettings) -> VersionMonitor {
        if let existing = versions[key] { return existing }
        let created = VersionMonitor(settings: settings)
        versions[key] = created
        return created
    }
}

/// One version's windows, drift tracker and estimation chunks. A class so the state dictionary is
/// not copied on every event; only touched under the monitor's lock.
final class VersionMonitor: @unchecked Sendable {
    var countWindow: QualityWindow
    var timeWindow: QualityWindow
    var drift: DriftTracker?
    var chunks: [EstimationChunk] = []
    var referenceAUC: Double?
    var history: [QualityPoint] = []

    init(settings: MonitorSettings) {
        // The configuration was validated by Monitor.init.
        countWindow = try! QualityWindow(.init(span: .count(settings.windowCount), threshold: settings.threshold, costs: settings.costs))
        timeWindow = try! QualityWindow(.init(span: .eventTime(seconds: settings.windowSeconds), threshold: settings.threshold, costs: settings.costs))
    }

    func observe(eventTimeMs: Int64, names: [String], values: [Double?], score: Double, settings: MonitorSettings) {
        drift?.add(names: names, values: values, score: score)
        chunk(for: eventTimeMs, settings)?.add(score: score, sample: settings.chunkSample)
    }

    func observe(label: Bool, score: Double, eventTime: Double, eventTimeMs: Int64, settings: MonitorSettings) {
        countWindow.add(score: score, label: label, eventTime: eventTime)
        timeWindow.add(score: score, label: label, eventTime: eventTime)
        chunk(for: eventTimeMs, settings)?.add(score: score, label: label, sample: settings.chunkSample)
        if referenceAUC == nil, countWindow.count >= settings.windowCount, let auc = countWindow.report().auc {
            referenceAUC = auc
        }
    }

    func advance(to eventTime: Double) {
        timeWindow.advance(to: eventTime)
    }

    /// The chunk holding `eventTimeMs`, created if it is newer than the oldest kept; `nil` if older.
    private func chunk(for eventTimeMs: Int64, _ settings: MonitorSettings) -> EstimationChunk? {
        let length = Int64(settings.chunkSeconds * 1000)
        let index = eventTimeMs >= 0 ? eventTimeMs / length : (eventTimeMs - length + 1) / length
        if let last = chunks.last, last.index == index { return last }
        if let found = chunks.last(where: { $0.index == index }) { return found }
        if let first = chunks.first, index < first.index, chunks.count >= settings.chunksKept { return nil }
        let created = EstimationChunk(index: index, startMs: index * length)
        chunks.append(created)
        chunks.sort { $0.index < $1.index }
        if chunks.count > settings.chunksKept { chunks.removeFirst(chunks.count - settings.chunksKept) }
        return created
    }

    func report(version: Int64?, eventTimeMs: Int64, settings: MonitorSettings) -> VersionReport {
        let count = countWindow.report()
        let time = timeWindow.report()
        let estimates = chunks.map { $0.estimate(threshold: settings.threshold, minimumLabels: settings.minimumSamples) }
        let point = QualityPoint(eventTimeMs: eventTimeMs, countAUC: count.auc, timeAUC: time.auc,
                                 estimatedAUC: estimates.last?.estimatedAUC)
        if history.last != point {
            history.append(point)
            if history.count > settings.historyPoints { history.removeFirst(history.count - settings.historyPoints) }
        }
        return VersionReport(
            version: version, countWindow: count, timeWindow: time, drift: drift?.featureDrift() ?? [],
            scoreDrift: drift?.scoreDrift(), chunks: estimates, referenceAUC: referenceAUC, history: history)
    }
}

// MARK: - Drift

/// Live histograms of a version's inputs and scores over the last `windowCount` predictions,
/// against the training summaries in its artifact. O(features) per prediction and allocation-free:
/// each prediction's bin per feature (and of its score) is kept in a preallocated ring, so a
/// prediction leaving the window decrements the bins it incremented without binning it again.
struct DriftTracker: Sendable {
    /// How one tracked input is binned.
    private enum Kind: Sendable {
        /// Bins of the training quantiles.
        case numeric
        /// Level `code` for a code below its level count, "other" (the last bin) for anything else.
        case categorical
        /// No training summary: not tracked.
        case untracked
    }

    /// A ring slot's value for a missing or untracked input.
    private static let noBin: Int32 = -1

    let names: [String]
    private let kinds: [Kind]
    /// Per input (one per name, then the score's): where its edges start in `edges` and how many
    /// it has (numeric), or its level count (categorical).
    private let edgeStarts: [Int]
    private let edgeCounts: [Int]
    /// Every numeric input's training quantile edges, one input after another.
    private let edges: [Double]
    /// Per input: where its bins start in `counts` (and, last, the end of the score's).
    private let binStarts: [Int]
    /// Per input: the training share of each of its bins.
    private let expected: [[Double]]
    /// The live count in every bin, one input after another.
    private var counts: [Int]
    /// Per input: the live values counted.
    private var totals: [Int]
    /// `windowCount` rows of `names.count + 1` bins (the score's last), oldest at `head`.
    private var ring: [Int32]
    private let windowCount: Int
    private var head = 0
    private var stored = 0
    /// The served layout last seen, where each of `names` sits in it, and whether that is the same order.
    private var layout: [String] = []
    private var positions: [Int] = []
    private var identity = false

    init(header: ModelArtifactHeader, windowCount: Int) {
        names = header.schema.names
        let summaries = Dictionary(header.training.features.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var kinds: [Kind] = []
        var edgeStarts: [Int] = []
        var edgeCounts: [Int] = []
        var edges: [Double] = []
        var binStarts: [Int] = []
        var expected: [[Double]] = []
        var bins = 0
        func add(_ kind: Kind, edges inputEdges: [Double], levels: Int, shares: [Double], bins inputBins: Int) {
            kinds.append(kind)
            edgeStarts.append(edges.count)
            edgeCounts.append(kind == .categorical ? levels : inputEdges.count)
            edges.append(contentsOf: inputEdges)
            binStarts.append(bins)
            bins += inputBins
            expected.append(shares)
        }
        for name in names {
            if let numeric = summaries[name]?.numeric {
                add(.numeric, edges: numeric.bins.edges, levels: 0, shares: numeric.bins.proportions, bins: numeric.bins.binCount)
            } else if let categorical = summaries[name]?.categorical {
                add(.categorical, edges: [], levels: categorical.levels.count, shares: categorical.proportions,
                    bins: categorical.levels.count + 1)
            } else {
                add(.untracked, edges: [], levels: 0, shares: [], bins: 0)
            }
        }
        let scores = header.training.scores.bins
        add(.numeric, edges: scores.edges, levels: 0, shares: scores.proportions, bins: scores.binCount)
        binStarts.append(bins)
        self.kinds = kinds
        self.edgeStarts = edgeStarts
        self.edgeCounts = edgeCounts
        self.edges = edges
        self.binStarts = binStarts
        self.expected = expected
        counts = [Int](repeating: 0, count: bins)
        totals = [Int](repeating: 0, count: kinds.count)
        self.windowCount = max(1, windowCount)
        ring = [Int32](repeating: Self.noBin, count: self.windowCount * kinds.count)
    }

    /// Counts one prediction's features (served as `values` in the order of `served`) and score into the window.
    mutating func add(names served: [String], values: [Double?], score value: Double) {
        if !Self.sameStorage(served, layout) {
            layout = served
            positions = names.map { name in served.firstIndex(of: name) ?? -1 }
            identity = positions == Array(names.indices)
        }
        let width = kinds.count
        if stored == windowCount {
            removeOldest(width: width)
        }
        let row = ((head + stored) % windowCount) * width
        stored += 1
        let direct = identity && values.count == names.count
        let inputs = names.count
        kinds.withUnsafeBufferPointer { kinds in
        edges.withUnsafeBufferPointer { edges in
        edgeStarts.withUnsafeBufferPointer { edgeStarts in
        edgeCounts.withUnsafeBufferPointer { edgeCounts in
        binStarts.withUnsafeBufferPointer { binStarts in
        positions.withUnsafeBufferPointer { positions in
        values.withUnsafeBufferPointer { values in
        counts.withUnsafeMutableBufferPointer { counts in
        totals.withUnsafeMutableBufferPointer { totals in
        ring.withUnsafeMutableBufferPointer { ring in
            /// Counts `raw` under its bin of input `i`; returns the bin, or ``noBin`` if the input is untracked.
            @inline(__always)
            func count(_ raw: Double, input i: Int) -> Int32 {
                let bin: Int
                switch kinds[i] {
                case .numeric:
                    let first = edgeStarts[i]
                    let edgeCount = edgeCounts[i]
                    // The number of edges strictly below `raw` (NaN goes to the last bin), as `BinnedDistribution.bin(of:)`.
                    if raw.isNaN {
                        bin = edgeCount
                    } else {
                        var low = 0
                        var high = edgeCount
                        while low < high {
                            let middle = (low + high) >> 1
                            if edges[first + middle] < raw { low = middle + 1 } else { high = middle }
                        }
                        bin = low
                    }
                case .categorical:
                    let levels = edgeCounts[i]
                    bin = raw.isFinite && raw >= 0 && raw < Double(levels) && raw == raw.rounded() ? Int(raw) : levels
                case .untracked:
                    return Self.noBin
                }
                counts[binStarts[i] + bin] += 1
                totals[i] += 1
                return Int32(bin)
            }
            for i in 0..<inputs {
                let raw: Double?
                if direct {
                    raw = values[i]
                } else {
                    let position = positions[i]
                    raw = position >= 0 && position < values.count ? values[position] : nil
                }
                ring[row + i] = raw.map { count($0, input: i) } ?? Self.noBin
            }
            ring[row + inputs] = count(value, input: inputs)
        }}}}}}}}}}
    }

    private mutating func removeOldest(width: Int) {
        let row = head * width
        binStarts.withUnsafeBufferPointer { binStarts in
        ring.withUnsafeBufferPointer { ring in
        counts.withUnsafeMutableBufferPointer { counts in
        totals.withUnsafeMutableBufferPointer { totals in
            for i in 0..<width {
                let bin = ring[row + i]
                if bin >= 0 {
                    counts[binStarts[i] + Int(bin)] -= 1
                    totals[i] -= 1
                }
            }
        }}}}
        head = (head + 1) % windowCount
        stored -= 1
    }

    /// Input `i`'s training shares and live counts per bin.
    private func histogram(_ i: Int) -> (expected: [Double], observed: [Int]) {
        (expected[i], Array(counts[binStarts[i]..<binStarts[i + 1]]))
    }

    /// Whether two name arrays share storage (the decoder hands every prediction with the same
    /// layout the same array), or are equal.
    private static func sameStorage(_ a: [String], _ b: [String]) -> Bool {
        let same = a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in pa.baseAddress == pb.baseAddress && pa.count == pb.count } }
        return same || a == b
    }

    func featureDrift() -> [FeatureDrift] {
        names.indices.compactMap { i in
            let (expected, observed) = histogram(i)
            switch kinds[i] {
            case .numeric:
                return FeatureDrift(
                    feature: names[i], count: totals[i],
                    psi: Drift.psi(expected: expected, observed: observed), ks: Drift.ks(expected: expected, observed: observed))
            case .categorical:
                return FeatureDrift(
                    feature: names[i], count: totals[i], psi: Drift.psi(expected: expected, observed: observed),
                    chiSquaredPValue: Drift.chiSquared(expected: expected, observed: observed).pValue)
            case .untracked:
                return nil
            }
        }
    }

    func scoreDrift() -> FeatureDrift {
        let (expected, observed) = histogram(names.count)
        return FeatureDrift(
            feature: "score", count: totals[names.count], psi: Drift.psi(expected: expected, observed: observed),
            ks: Drift.ks(expected: expected, observed: observed))
    }
}

// MARK: - Label-free estimates

/// The predictions of one event-time chunk (a uniform sample of their scores) and its labels.
final class EstimationChunk: @unchecked Sendable {
    let index: Int64
    let startMs: Int64
    private(set) var predictions = 0
    private(set) var labeled = 0
    private var scores: [Double] = []
    private var labeledScores: [Double] = []
    private var labels: [Bool] = []
    private var random = SplitMix(seed: 0x5eed)

    init(index: Int64, startMs: Int64) {
        self.index = index
        self.startMs = startMs
        random = SplitMix(seed: UInt64(bitPattern: index) &+ 0x5eed)
    }

    func add(score: Double, sample: Int) {
        predictions += 1
        if scores.count < sample {
            scores.append(score)
        } else {
            let slot = Int(random.next() % UInt64(predictions))
            if slot < sample { scores[slot] = score }
        }
    }

    func add(score: Double, label: Bool, sample: Int) {
        labeled += 1
        if labeledScores.count < sample {
            labeledScores.append(score)
            labels.append(label)
        } else {
            let slot = Int(random.next() % UInt64(labeled))
            if slot < sample {
                labeledScores[slot] = score
                labels[slot] = label
            }
        }
    }

    /// CBPE over the chunk's scores; once at least `minimumLabels` labels arrived, the actual
    /// figures on the labeled ones and the estimate's error.
    func estimate(threshold: Double, minimumLabels: Int) -> ChunkEstimate {
        let estimate = PerformanceEstimation.estimate(scores: scores, threshold: threshold)
        var result = ChunkEstimate(
            startMs: startMs, predictions: predictions, labeled: labeled, estimatedAUC: estimate.expectedAUC,
            estimatedAccuracy: estimate.expectedAccuracy)
        if labeled >= minimumLabels {
            result.actualAUC = Metrics.rocAUC(scores: labeledScores, labels: labels)
            let accuracy = Metrics.accuracy(scores: labeledScores, labels: labels, threshold: threshold)
            result.actualAccuracy = accuracy
            result.accuracyError = estimate.expectedAccuracy - accuracy
            if let estimated = estimate.expectedAUC, let actual = result.actualAUC { result.aucError = estimated - actual }
        }
        return result
    }
}

/// A small deterministic generator for reservoir sampling.
struct SplitMix: Sendable {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

import Contracts
import Kafka
import Learning

/// The "is it worth scaling?" checklist, answered from the loop's own topics: business value,
/// validated output quality, data continuity, production feasibility, user feedback and the trend
/// of the success metrics, each pass/warn/fail with the numbers behind it.
public enum ReadinessChecklist {
    /// A check's verdict.
    public enum Status: String, Sendable, Hashable, Comparable {
        case pass, warn, fail
        public static func < (lhs: Status, rhs: Status) -> Bool { lhs.rank < rhs.rank }
        var rank: Int { self == .pass ? 0 : self == .warn ? 1 : 2 }
    }

    /// One line of the checklist.
    public struct Item: Sendable, Hashable {
        public var check: String
        public var status: Status
        /// The numbers behind the verdict, for a person.
        public var summary: String
        /// The same numbers by name, for `--json`.
        public var numbers: [String: Double]
    }

    /// One `loop.events` record's time facts (read from its headers, without parsing the data).
    public struct EventFact: Sendable, Hashable {
        public var partition: Int32
        public var eventTimeMs: Int64?
        public init(partition: Int32, eventTimeMs: Int64?) {
            self.partition = partition
            self.eventTimeMs = eventTimeMs
        }
    }

    /// What the checklist reads.
    public struct Input: Sendable {
        public var labeled: [LabeledExample] = []
        public var predictions: [Prediction] = []
        /// Broker timestamps of the predictions (wall clock, ms), for throughput.
        public var predictionWallTimesMs: [Int64] = []
        public var monitoring: [MonitoringRecord] = []
        public var events: [EventFact] = []
        public var deadLetters = 0
        public var costs = DecisionCosts()
        public var threshold = 0.5
        /// The baseline policy's score (loop.yaml `decision.baselineScore`); `nil`: the majority class.
        public var baselineScore: Double?
        public var allowedLatenessMs: Int64 = 3_600_000
        public var maxCalibrationError = 0.15

        public init() {}

        /// The policy numbers of `config`.
        public mutating func apply(_ config: LoopConfig) {
            costs = DecisionCosts(config.costs)
            threshold = config.decision.threshold
            baselineScore = config.decision.baselineScore
            allowedLatenessMs = Int64(config.features.allowedLateness.seconds * 1000)
            maxCalibrationError = config.retraining.gate.maxCalibrationError
        }

        /// Facts of `loop.events` records.
        public static func eventFacts(_ records: [ConsumedRecord]) -> [EventFact] {
            records.map { record in
                let time = record.header("ce_time")?.value.flatMap { String(validating: $0, as: UTF8.self) }
                    .flatMap { try? Timestamp(rfc3339: $0) }
                return EventFact(partition: record.partition, eventTimeMs: time?.epochMilliseconds)
            }
        }
    }

    /// Evaluates every check.
    public static func evaluate(_ input: Input) -> [Item] {
        let served = served(input.labeled)
        return [
            businessValue(served, input), outputQuality(served, input), dataContinuity(input),
            productionFeasibility(input), userFeedback(served, input), trend(served, input),
        ]
    }

    /// The labeled predictions that decided (every role but shadow), in event-time order.
    public static func served(_ labeled: [LabeledExample]) -> [LabeledExample] {
        labeled.filter { $0.role != .shadow }.sorted { $0.eventTimeMs < $1.eventTimeMs }
    }

    /// The constant decision of the baseline policy: its score against the threshold, or the
    /// majority class of `labels` when no baseline score is configured.
    public static func baselineDecision(labels: [Bool], baselineScore: Double?, threshold: Double) -> Bool {
        baselineScore.map { $0 >= threshold } ?? (labels.count { $0 } * 2 > labels.count)
    }

    // MARK: - Checks

    static func businessValue(_ served: [LabeledExample], _ input: Input) -> Item {
        let name = "business value"
        guard !served.isEmpty else { return Item(check: name, status: .warn, summary: "no labeled predictions yet", numbers: [:]) }
        var model = ConfusionCounts(), baseline = ConfusionCounts()
        let baselinePositive = baselineDecision(
            labels: served.map(\.label), baselineScore: input.baselineScore, threshold: input.threshold)
        for example in served {
            model = adding(model, decided: example.decision, label: example.label)
            baseline = adding(baseline, decided: baselinePositive, label: example.label)
        }
        let modelCost = model.cost(input.costs) / Double(served.count)
        let baselineCost = baseline.cost(input.costs) / Double(served.count)
        let saving = baselineCost > 0 ? (baselineCost - modelCost) / baselineCost : (modelCost == 0 ? 0 : -1)
        let status: Status = saving >= 0.05 ? .pass : saving >= 0 ? .warn : .fail
        return Item(
            check: name, status: status,
            summary: "cost \(Format.number(modelCost))/decision vs \(Format.number(baselineCost)) for the baseline "
                + "(always \(baselinePositive ? "positive" : "negative")): \(Format.percent(saving, 1)) saved over \(Format.count(served.count)) labeled",
            numbers: ["cost": modelCost, "baselineCost": baselineCost, "saving": saving, "labeled": Double(served.count)])
    }

    static func outputQuality(_ served: [LabeledExample], _ input: Input) -> Item {
        let name = "output quality"
        var byVersion: [Int64: [LabeledExample]] = [:]
        for example in served { if let version = example.modelVersion { byVersion[version, default: []].append(example) } }
        guard let current = served.last(where: { $0.modelVersion != nil })?.modelVersion, let examples = byVersion[current] else {
            return Item(check: name, status: .fail, summary: "no model version has served a labeled prediction yet", numbers: [:])
        }
        var parts: [String] = []
        var numbers: [String: Double] = [:]
        for version in byVersion.keys.sorted() {
            let rows = byVersion[version]!
            let auc = Metrics.rocAUC(scores: rows.map(\.score), labels: rows.map(\.label))
            let ece = Metrics.calibration(scores: rows.map(\.score), labels: rows.map(\.label)).expectedCalibrationError
            parts.append("v\(version): AUC \(Format.number(auc)) ECE \(Format.number(ece)) n=\(Format.count(rows.count))")
            numbers["auc.v\(version)"] = auc
            numbers["ece.v\(version)"] = ece
        }
        let auc = Metrics.rocAUC(scores: examples.map(\.score), labels: examples.map(\.label)) ?? 0.5
        let ece = Metrics.calibration(scores: examples.map(\.score), labels: examples.map(\.label)).expectedCalibrationError
        let status: Status = auc >= 0.75 && ece <= input.maxCalibrationError ? .pass : auc >= 0.6 ? .warn : .fail
        return Item(check: name, status: status, summary: "current v\(current); " + parts.joined(separator: "; "), numbers: numbers)
    }

    static func dataContinuity(_ input: Input) -> Item {
        let name = "data continuity"
        let times = input.events.compactMap(\.eventTimeMs).sorted()
        guard times.count >= 2 else {
            return Item(check: name, status: .warn, summary: "fewer than 2 events on loop.events", numbers: ["events": Double(times.count)])
        }
        var gaps: [Int64] = []
        for index in 1..<times.count where times[index] > times[index - 1] { gaps.append(times[index] - times[index - 1]) }
        gaps.sort()
        let medianGap = gaps.isEmpty ? 0 : gaps[gaps.count / 2]
        let maxGap = gaps.last ?? 0
        let spanDays = Double(times.last! - times.first!) / 86_400_000
        var late = 0
        var newest: [Int32: Int64] = [:]
        for fact in input.events {
            guard let time = fact.eventTimeMs else { continue }
            if let seen = newest[fact.partition], time < seen - input.allowedLatenessMs { late += 1 }
            newest[fact.partition] = max(newest[fact.partition] ?? time, time)
        }
        let lateShare = Double(late) / Double(input.events.count)
        let dlqShare = Double(input.deadLetters) / Double(input.events.count + input.deadLetters)
        let gapRatio = medianGap > 0 ? Double(maxGap) / Double(medianGap) : 1
        let status: Status = dlqShare <= 0.01 && lateShare <= 0.01 && gapRatio <= 10 ? .pass
            : dlqShare <= 0.05 && lateShare <= 0.05 ? .warn : .fail
        return Item(
            check: name, status: status,
            summary: "\(Format.count(input.events.count)) events over \(Format.number(spanDays, 1)) event days "
                + "(\(Format.number(spanDays > 0 ? Double(input.events.count) / spanDays : 0, 0))/day); largest gap "
                + "\(Format.duration(Double(maxGap) / 1000)) (median \(Format.duration(Double(medianGap) / 1000))); "
                + "DLQ \(Format.percent(dlqShare)) (\(Format.count(input.deadLetters))); late \(Format.percent(lateShare))",
            numbers: ["events": Double(input.events.count), "eventsPerDay": spanDays > 0 ? Double(input.events.count) / spanDays : 0,
                      "maxGapSeconds": Double(maxGap) / 1000, "medianGapSeconds": Double(medianGap) / 1000,
                      "dlqShare": dlqShare, "lateShare": lateShare])
    }

    static func productionFeasibility(_ input: Input) -> Item {
        let name = "production feasibility"
        guard !input.predictions.isEmpty else {
            return Item(check: name, status: .warn, summary: "no predictions yet", numbers: [:])
        }
        let latencies = input.predictions.map(\.latencyMs).sorted()
        func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int((p * Double(latencies.count)).rounded(.up)) - 1)] }
        let (p50, p95, p99) = (percentile(0.5), percentile(0.95), percentile(0.99))
        var throughput: Double?
        if let first = input.predictionWallTimesMs.min(), let last = input.predictionWallTimesMs.max(), last > first {
            throughput = Double(input.predictionWallTimesMs.count) / (Double(last - first) / 1000)
        }
        let status: Status = p99 <= 100 ? .pass : p99 <= 500 ? .warn : .fail
        var numbers = ["p50Ms": p50, "p95Ms": p95, "p99Ms": p99, "predictions": Double(latencies.count)]
        numbers["predictionsPerSecond"] = throughput
        return Item(
            check: name, status: status,
            summary: "latency p50 \(Format.number(p50, 1))ms p95 \(Format.number(p95, 1))ms p99 \(Format.number(p99, 1))ms; "
                + "\(Format.count(latencies.count)) predictions at \(Format.number(throughput, 0))/s",
            numbers: numbers)
    }

    static func userFeedback(_ served: [LabeledExample], _ input: Input) -> Item {
        let name = "user feedback"
        let routed = input.predictions.count { $0.route == .review }
        let reviewShare = input.predictions.isEmpty ? 0 : Double(routed) / Double(input.predictions.count)
        let reviewed = served.filter { $0.labelSource == .review }
        let agreement = reviewed.isEmpty ? nil : Double(reviewed.count { $0.decision == $0.label }) / Double(reviewed.count)
        let status: Status
        if let agreement {
            status = agreement < 0.5 ? .fail : agreement >= 0.7 && reviewShare <= 0.2 ? .pass : .warn
        } else {
            status = .warn
        }
        var numbers = ["routedToReview": Double(routed), "reviewShare": reviewShare, "reviews": Double(reviewed.count)]
        numbers["agreement"] = agreement
        return Item(
            check: name, status: status,
            summary: "\(Format.count(routed)) predictions routed to review (\(Format.percent(reviewShare, 1))); "
                + "\(Format.count(reviewed.count)) verdicts, model agreed with \(Format.percent(agreement, 1))",
            numbers: numbers)
    }

    static func trend(_ served: [LabeledExample], _ input: Input) -> Item {
        let name = "success trend"
        var open: Set<String> = []
        for record in input.monitoring where record.kind == .alert {
            guard let id = record.alertId else { continue }
            if record.alertState == .resolved { open.remove(id) } else { open.insert(id) }
        }
        guard served.count >= 20 else {
            return Item(check: name, status: .warn, summary: "too few labeled predictions for a trend; \(open.count) open alerts",
                        numbers: ["openAlerts": Double(open.count)])
        }
        let third = served.count / 3
        let early = served.prefix(third), late = served.suffix(third)
        let earlyAUC = Metrics.rocAUC(scores: early.map(\.score), labels: early.map(\.label))
        let lateAUC = Metrics.rocAUC(scores: late.map(\.score), labels: late.map(\.label))
        let earlyAccuracy = Double(early.count { $0.decision == $0.label }) / Double(early.count)
        let lateAccuracy = Double(late.count { $0.decision == $0.label }) / Double(late.count)
        let change = (lateAUC ?? 0.5) - (earlyAUC ?? 0.5)
        let status: Status = change < -0.05 ? .fail : change < -0.02 || !open.isEmpty ? .warn : .pass
        var numbers = ["aucChange": change, "earlyAccuracy": earlyAccuracy, "lateAccuracy": lateAccuracy, "openAlerts": Double(open.count)]
        numbers["earlyAUC"] = earlyAUC
        numbers["lateAUC"] = lateAUC
        return Item(
            check: name, status: status,
            summary: "AUC first third \(Format.number(earlyAUC)) → last third \(Format.number(lateAUC)); accuracy "
                + "\(Format.percent(earlyAccuracy, 1)) → \(Format.percent(lateAccuracy, 1)); \(open.count) open alerts",
            numbers: numbers)
    }

    private static func adding(_ counts: ConfusionCounts, decided: Bool, label: Bool) -> ConfusionCounts {
        var counts = counts
        switch (decided, label) {
        case (true, true): counts.truePositives += 1
        case (true, false): counts.falsePositives += 1
        case (false, true): counts.falseNegatives += 1
        case (false, false): counts.trueNegatives += 1
        }
        return counts
    }

    /// The checklist as a table.
    public static func text(_ items: [Item]) -> String {
        Format.table([["STATUS", "CHECK", "NUMBERS"]] + items.map { [$0.status.rawValue.uppercased(), $0.check, $0.summary] })
    }

    /// The checklist as JSON.
    public static func json(_ items: [Item]) -> JSONValue {
        .array(items.map { item in
            ["check": .string(item.check), "status": .string(item.status.rawValue), "summary": .string(item.summary),
             "numbers": .object(JSONObject(item.numbers.map { ($0.key, JSONValue($0.value)) }))]
        })
    }
}

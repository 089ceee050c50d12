import Contracts
import Foundation
import Kafka
import ServiceKit
import TestSupport
import Testing

/// The whole loop on a slice of Elec2: Tansu and the five built service executables as separate
/// processes, fed by `loopctl replay` through Kafka, checked against the topics' contents (read here
/// independently), then operated with `loopctl`.
@Suite("whole loop", .serialized)
struct WholeLoopTests {
    /// Rows replayed before a model exists, and after the first promotion.
    static let firstRows = 0..<2000
    static let laterRows = 2000..<3000

    /// The test loop.yaml: examples/elec2/loop.yaml retraining every 800 labels on at most 1,600
    /// examples (instead of every week of event time on 12 weeks), with a gate that a first model
    /// on 800 examples can meet (its holdout calibration error varies from run to run between about
    /// 0.14 and 0.21 on the same rows), and monitoring snapshots every second.
    static let adjustments = [
        ("  everyLabels: null ", "  everyLabels: 800 "),
        ("  everyEventTime: 7d ", "  everyEventTime: null "),
        ("  trainingExamples: 4032 ", "  trainingExamples: 1600 "),
        ("    minHoldout: 200", "    minHoldout: 100"),
        ("    maxCalibrationError: 0.15", "    maxCalibrationError: 0.35"),
        ("  snapshotInterval: 10s", "  snapshotInterval: 1s"),
    ]

    @Test("Elec2 slice through the five built executables: a model is trained and promoted and then serves, every outcome is labeled once, no DLQ, loopctl's numbers are the topics'")
    func wholeLoop() async throws {
        try await withLoopStack("elec2", adjust: Self.adjustments) { stack in
            let mapping = LoopStack.repositoryRoot.appendingPathComponent("examples/elec2/replay.yaml").path
            let (firstCSV, laterCSV) = try Self.writeSlices(into: stack.directory)
            let started = ContinuousClock.now

            // MARK: Phase 1: replay until a model is trained and promoted
            let firstReplay = try await stack.loopctl(["replay", firstCSV, "--mapping", mapping, "--quiet"], timeout: .seconds(120))
            try #require(firstReplay.succeeded, "replay failed: \(firstReplay.standardError)")
            let registry = try await eventually("a champion in \(stack.topics.models)", stack, timeout: .seconds(60)) {
                if let state = try await stack.registryStates().last, state.champion != nil { return state }
                let versions = try await stack.modelVersions()
                let reasons = try await Self.reasonCounts(stack.decoded(Prediction.self, from: stack.topics.predictions))
                throw ChildProcess.Failure(description: "versions so far: " + versions.map { "v\($0.version) \($0.status.rawValue): \($0.reasons.joined(separator: "; "))" }.joined(separator: " | ") + "; prediction reasons: \(reasons)")
            }
            let firstChampion = try #require(registry.champion)
            _ = try await eventually("the scorer serving registry revision \(registry.revision)", stack, timeout: .seconds(60)) {
                let revision = try await Self.metric("scorer_registry_revision", port: stack.service("scorer").adminPort)
                return (revision ?? 0) >= Double(registry.revision) ? true : nil
            }

            // MARK: Phase 2: replay the rest, served by the promoted model
            let laterReplay = try await stack.loopctl(["replay", laterCSV, "--mapping", mapping, "--quiet"], timeout: .seconds(120))
            try #require(laterReplay.succeeded, "replay failed: \(laterReplay.standardError)")
            let rowCount = Self.firstRows.count + Self.laterRows.count
            _ = try await eventually("\(rowCount) labeled examples", stack, timeout: .seconds(120)) {
                try await stack.records(stack.topics.labeled).count >= rowCount ? true : nil
            }
            print("whole loop: replayed and labeled in \(ContinuousClock.now - started)")
            print("whole loop: prediction reasons \(Self.reasonCounts(try await stack.decoded(Prediction.self, from: stack.topics.predictions)))")

            // MARK: The topics, read here
            let raw = Self.countByType(try await stack.records(stack.topics.rawEvents))
            let eventRecords = try await stack.records(stack.topics.events)
            let events = Self.countByType(eventRecords)
            let outcomeIDs = try eventRecords.filter { Self.type(of: $0) == EventType.outcome.description }.map { record in
                try #require(JSONValue.parse(record.value ?? [])["requestId"]?.stringValue)
            }
            let predictions = try await stack.decoded(Prediction.self, from: stack.topics.predictions)
            let labeled = try await stack.decoded(LabeledExample.self, from: stack.topics.labeled)
            let deadLetters = try await stack.records(stack.topics.deadLetters)
            let versions = try await stack.modelVersions()
            let states = try await stack.registryStates()

            // The replay's own summaries are what reached loop.events.raw, and ingest passed all of it.
            let sent = Self.replayCounts(firstReplay.standardOutput).merging(Self.replayCounts(laterReplay.standardOutput), uniquingKeysWith: +)
            #expect(sent == [EventType.scoreRequest.description: rowCount, EventType.observation.description: rowCount, EventType.outcome.description: rowCount],
                    "replay summaries: \(firstReplay.standardOutput)\n\(laterReplay.standardOutput)")
            #expect(raw == sent)
            #expect(events == sent, "every valid raw event reaches loop.events")
            #expect(deadLetters.isEmpty, "no valid event is dead-lettered: \(deadLetters.prefix(3).compactMap { $0.value.map { String(decoding: $0, as: UTF8.self) } })")

            // Every score request is answered once; every outcome becomes exactly one labeled example.
            let requestIDs = Set((Self.firstRows.lowerBound..<Self.laterRows.upperBound).map { "elec2-\($0)" })
            #expect(predictions.count == rowCount)
            #expect(Set(predictions.map(\.requestId)) == requestIDs)
            #expect(outcomeIDs.count == rowCount && Set(outcomeIDs) == requestIDs)
            #expect(labeled.count == outcomeIDs.count, "one labeled example per outcome")
            #expect(Set(labeled.map(\.requestId)) == Set(outcomeIDs))
            #expect(labeled.allSatisfy { $0.labelSource == .outcome })

            // A model was trained and promoted; what was scored after the promotion carries its version.
            let promoted = Set(states.compactMap(\.champion))
            #expect(versions.contains { $0.version == firstChampion && $0.status == ModelStatus.champion })
            let later = Set(Self.laterRows.map { "elec2-\($0)" })
            let laterPredictions = predictions.filter { later.contains($0.requestId) }.sorted { $0.eventTimeMs < $1.eventTimeMs }
            #expect(laterPredictions.count == Self.laterRows.count)
            let championsSince = Set(states.filter { $0.revision >= registry.revision }.compactMap(\.champion))
            #expect(laterPredictions.first?.modelVersion.map(championsSince.contains) == true,
                    "the first request after the promotion: \(String(describing: laterPredictions.first?.modelVersion)), champions since: \(championsSince)")
            #expect(laterPredictions.allSatisfy { $0.role == .champion && $0.modelVersion.map(promoted.contains) == true },
                    "roles/versions after the promotion: \(Dictionary(grouping: laterPredictions) { "\($0.role.rawValue) v\($0.modelVersion.map(String.init) ?? "-")" }.mapValues(\.count))")
            #expect(predictions.filter { !later.contains($0.requestId) }.contains { $0.role == .baseline },
                    "before any model the baseline answered")

            // MARK: loopctl report: its numbers are the topics'
            let reportPath = stack.directory.appendingPathComponent("report.html").path
            let report = try await stack.loopctl(["report", "--out", reportPath], timeout: .seconds(60))
            #expect(report.succeeded, "\(report.standardError)")
            let text = report.standardOutput
            #expect(Self.count(after: "events", in: text) == eventRecords.count, "\(text)")
            #expect(Self.count(after: "predictions", in: text) == predictions.count)
            #expect(Self.count(after: "labels", in: text) == labeled.count)
            #expect(Self.count(after: "dead letters", in: text) == deadLetters.count)
            for version in Set(versions.map(\.version)) {
                #expect(text.contains("v\(version) "), "report lists model version \(version)")
            }
            for version in Set(predictions.filter { $0.role == .champion }.compactMap(\.modelVersion)) {
                #expect(text.contains("v\(version) at "), "report: champion v\(version) served from its promotion")
            }
            #expect(FileManager.default.fileExists(atPath: reportPath))

            print("whole loop: topics and report checked after \(ContinuousClock.now - started)")
            try await Self.operate(stack, predictions: predictions, versions: versions)
            print("whole loop: loopctl commands checked after \(ContinuousClock.now - started)")
        }
    }

    // MARK: - loopctl against the running stack

    /// status, models list/show, dlq list, tail, readiness and retrain, each checked against the
    /// topics and the services.
    static func operate(_ stack: LoopStack, predictions: [Prediction], versions: [ModelVersionRecord]) async throws {
        // status: every service alive and ready; every group's lag read, and drained (monitoring
        // grows every second, so its lag is only read).
        let operateStarted = ContinuousClock.now
        var lastStatus = ""
        let drainedGroups = ["ingest", "feature-store", "scorer", "feedback", "retrainer"]
        let status = try await eventually("every consumer group caught up in `loopctl status`", stack, timeout: .seconds(30)) {
            let output = try await stack.loopctl(["status", "--json"])
            lastStatus = output.standardOutput + output.standardError
            let json = try JSONValue.parse(output.standardOutput)
            let drained = (json["lag"]?.arrayValue ?? [])
                .filter { drainedGroups.contains($0["service"]?.stringValue ?? "") && $0["topic"]?.stringValue != stack.topics.monitoring }
                .allSatisfy { $0["lag"]?.int64Value == 0 }
            guard output.succeeded && drained else { throw ChildProcess.Failure(description: "last status: \(lastStatus)") }
            return json
        }
        print("whole loop: status drained after \(ContinuousClock.now - operateStarted)")
        let reported = status["services"]?.arrayValue ?? []
        #expect(Set(reported.compactMap { $0["service"]?.stringValue }) == Set(LoopStack.serviceNames))
        for entry in reported {
            let name = entry["service"]?.stringValue ?? "?"
            #expect(entry["health"]?.stringValue == "alive" && entry["readiness"]?.stringValue == "ready", "\(name): \(entry)")
            #expect(entry["version"]?.stringValue == LoopVersion.current, "\(name): \(entry)")
            #expect(entry["url"]?.stringValue == stack.service(name).url + "/" || entry["url"]?.stringValue == stack.service(name).url)
        }
        let lags = status["lag"]?.arrayValue ?? []
        for (service, topic) in [("ingest", stack.topics.rawEvents), ("feature-store", stack.topics.events), ("scorer", stack.topics.events),
                                 ("feedback", stack.topics.events), ("feedback", stack.topics.predictions), ("retrainer", stack.topics.labeled),
                                 ("retrainer", stack.topics.monitoring)] {
            let entry = lags.first { $0["service"]?.stringValue == service && $0["topic"]?.stringValue == topic }
            #expect(entry?["group"]?.stringValue == "\(stack.prefix).\(service)", "\(service) on \(topic): \(String(describing: entry))")
            #expect(entry?["lag"]?.int64Value != nil && (entry?["committedPartitions"]?.int64Value ?? 0) > 0,
                    "\(service) on \(topic): \(String(describing: entry))")
        }
        let statusText = try await stack.loopctl(["status"])
        #expect(statusText.succeeded)
        for name in LoopStack.serviceNames {
            #expect(statusText.standardOutput.contains(name) && statusText.standardOutput.contains("\(stack.prefix).\(name)"), "\(statusText.standardOutput)")
        }

        // models list / show: the versions on loop.models, the champion starred.
        let registry = try #require(try await stack.registryStates().last)
        let champion = try #require(registry.champion)
        let list = try await stack.loopctl(["models", "list", "--json"])
        #expect(list.succeeded, "\(list.standardError)")
        let listed = try JSONValue.parse(list.standardOutput)
        let listedVersions = (listed["versions"]?.arrayValue ?? []).compactMap { $0["version"]?.int64Value }
        #expect(Set(listedVersions).isSuperset(of: Set(versions.map(\.version))), "\(list.standardOutput.prefix(500))")
        let listText = try await stack.loopctl(["models", "list"])
        #expect(listText.standardOutput.split(separator: "\n").contains { $0.hasPrefix("*\(champion) ") }, "\(listText.standardOutput)")
        let show = try await stack.loopctl(["models", "show", String(champion)])
        #expect(show.succeeded, "\(show.standardError)")
        let card = try #require(versions.last { $0.version == champion }?.card)
        #expect(!card.isEmpty && show.standardOutput.contains(card.prefix(200)), "\(show.standardOutput.prefix(500))")

        // dlq list: nothing dead-lettered.
        let dlq = try await stack.loopctl(["dlq", "list"])
        #expect(dlq.succeeded && dlq.standardOutput.contains("no dead letters"), "\(dlq.standardOutput)")

        // tail: the last predictions, as on the topic.
        let tail = try await stack.loopctl(["tail", "predictions", "--last", "5"])
        #expect(tail.succeeded, "\(tail.standardError)")
        let tailed = try tail.standardOutput.split(separator: "\n").map { line in
            try #require(JSONValue.parse(String(line))["prediction"]?["requestId"]?.stringValue, "\(line)")
        }
        #expect(tailed == predictions.suffix(5).map(\.requestId), "\(tail.standardOutput)")

        // readiness: every checklist item, with numbers from this run.
        let readiness = try await stack.loopctl(["readiness", "--json"])
        let items = try JSONValue.parse(readiness.standardOutput).arrayValue ?? []
        #expect(items.count >= 6, "\(readiness.standardOutput)")
        #expect(items.allSatisfy { ["pass", "warn", "fail"].contains($0["status"]?.stringValue ?? "") && $0["numbers"]?.objectValue?.isEmpty == false },
                "\(readiness.standardOutput)")

        print("whole loop: status, models, dlq, tail, readiness after \(ContinuousClock.now - operateStarted)")
        // retrain: a manual run produces a new version on loop.models.
        let before = Set(versions.map(\.version))
        let retrain = try await stack.loopctl(["retrain", "--reason", "end-to-end test"])
        #expect(retrain.succeeded, "\(retrain.standardOutput)\(retrain.standardError)")
        let manual = try await eventually("a version trained on the manual trigger", stack, timeout: .seconds(60)) {
            try await stack.modelVersions()
                .first { !before.contains($0.version) && $0.trigger.contains("manual") }
        }
        #expect(manual.version > (before.max() ?? 0))
    }

    // MARK: - Helpers

    /// Writes the header plus ``firstRows`` and plus ``laterRows`` of examples/elec2/elec2.csv into two files.
    static func writeSlices(into directory: URL) throws -> (String, String) {
        let text = try String(contentsOf: LoopStack.repositoryRoot.appendingPathComponent("examples/elec2/elec2.csv"), encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        let header = lines[0]
        let rows = lines.dropFirst()
        func write(_ range: Range<Int>, _ name: String) throws -> String {
            let path = directory.appendingPathComponent(name).path
            let slice = rows[(rows.startIndex + range.lowerBound)..<(rows.startIndex + range.upperBound)]
            try ([header] + slice).joined(separator: "\n").appending("\n").write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        return (try write(firstRows, "elec2-first.csv"), try write(laterRows, "elec2-later.csv"))
    }

    /// How many predictions carry each reason code (`none` for none).
    static func reasonCounts(_ predictions: [Prediction]) -> [String: Int] {
        predictions.reduce(into: [:]) { counts, prediction in
            for reason in prediction.reasons.isEmpty ? ["none"] : prediction.reasons { counts[reason, default: 0] += 1 }
        }
    }

    /// The `ce_type` header of a binary-mode record.
    static func type(of record: ConsumedRecord) -> String {
        record.headers.first { $0.key == "ce_type" }?.value.map { String(decoding: $0, as: UTF8.self) } ?? "?"
    }

    static func countByType(_ records: [ConsumedRecord]) -> [String: Int] {
        records.reduce(into: [:]) { counts, record in counts[type(of: record), default: 0] += 1 }
    }

    /// Events per type from `loopctl replay`'s summary lines.
    static func replayCounts(_ summary: String) -> [String: Int] {
        [
            EventType.scoreRequest.description: count(after: "score requests", in: summary) ?? -1,
            EventType.observation.description: count(after: "observations", in: summary) ?? -1,
            EventType.outcome.description: count(after: "outcomes", in: summary) ?? -1,
        ]
    }

    /// The number (with thousands separators) after `label` at the start of a line of `text`.
    static func count(after label: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") {
            let trimmed = line.drop { $0 == " " }
            guard trimmed.hasPrefix(label) else { continue }
            let rest = trimmed.dropFirst(label.count).drop { $0 == " " }
            let digits = rest.prefix { $0.isNumber || $0 == "," }.filter(\.isNumber)
            if let value = Int(digits), rest.first?.isNumber == true { return value }
        }
        return nil
    }

    /// A metric's value from a service's `/metrics`.
    static func metric(_ name: String, port: Int) async throws -> Double? {
        let reply = try await HTTPGet.fetch(port: port, path: "/metrics")
        for line in reply.body.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ")[1])
        }
        return nil
    }
}

/// Polls `check` until it returns a value; fails after `timeout` with every service's log tail.
func eventually<T>(
    _ what: String, _ stack: LoopStack, timeout: Duration, poll: Duration = .milliseconds(500),
    _ check: () async throws -> T?
) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    var lastError: (any Error)?
    while true {
        do {
            if let value = try await check() { return value }
        } catch {
            lastError = error
        }
        if let stopped = stack.services.first(where: { !$0.process.isRunning }) {
            throw ChildProcess.Failure(description: "waiting for \(what): \(stopped.name) exited")
        }
        guard ContinuousClock.now < deadline else {
            throw ChildProcess.Failure(description: "no \(what) within \(timeout)\(lastError.map { " (last error: \($0))" } ?? "")")
        }
        try await Task.sleep(for: poll)
    }
}

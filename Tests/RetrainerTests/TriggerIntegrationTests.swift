import Contracts
import Foundation
import Kafka
import ServiceKit
import Synchronization
import Testing
import TestSupport
@testable import Retrainer

@Suite("Alert and schedule triggers", .serialized)
struct TriggerIntegrationTests {
    static let gate = "holdoutShare: 0.25\ngate: { metric: auc, minHoldout: 50, minImprovement: -1.0, maxCalibrationError: 0.5 }"

    static func alert(
        _ id: String, _ kind: MonitoringRecord.AlertKind, state: MonitoringRecord.AlertState = .open, feature: String? = nil,
        eventTimeMs: Int64 = Fixture.startMs
    ) -> MonitoringRecord {
        MonitoringRecord(
            kind: .alert, modelVersion: 1, eventTimeMs: eventTimeMs, alertKind: kind, alertState: state, alertId: id,
            feature: feature, value: 0.31, threshold: 0.2)
    }

    /// The first record of each version, in order of publication.
    static func firstRecords(_ records: [ModelVersionRecord]) -> [ModelVersionRecord] {
        var seen: Set<Int64> = []
        return records.filter { seen.insert($0.version).inserted }
    }

    static func triggerIds(_ record: ModelVersionRecord?) -> [String] {
        record?.lineage["triggerIds"]?.arrayValue?.compactMap(\.stringValue) ?? []
    }

    @Test("the running service: an open alert on loop.monitoring fires one run with its reason; a repeated, resolved or starvation alert does not")
    func alertThroughTheService() async throws {
        let broker = try await Broker.shared()
        let prefix = Broker.uniqueTopic("rt-alert")
        let config = try Fixture.config(prefix: prefix, retraining: "everyLabels: 300\nonDriftAlert: true\n" + Self.gate)
        let common = CommonSettings(service: RetrainerService.name, defaultAdminPort: 0)
        guard case .run(let settings) = try Settings.parse(
            common.all + RetrainerService.settings,
            arguments: ["--brokers", broker.bootstrap, "--state-dir", try Fixture.temporaryDirectory(), "--admin-port", "0"],
            environment: [:])
        else { Issue.record("settings did not parse"); return }
        let environment = ServiceEnvironment(
            name: RetrainerService.name, settings: settings, common: common, config: config, logger: Fixture.logger,
            apiKeys: APIKeys())
        let service = try await RetrainerService(environment: environment)
        let running = Task { try await service.run() }
        defer { running.cancel() }

        let producer = try KafkaProducer(config: KafkaConfig(brokers: broker.bootstrap), logger: Fixture.logger)
        let topics = config.topics.names
        @Sendable func versions() async -> [ModelVersionRecord] {
            let book = await service.registry.snapshot
            return book.versions.keys.sorted().compactMap { book.versions[$0] }
        }
        @Sendable func monitor(_ records: [MonitoringRecord]) async throws {
            _ = try await producer.send(records.map { OutgoingRecord(topic: topics.monitoring, key: nil, value: $0.bytes) })
        }
        // The labels train version 1 (every 300 labels), so the store has data before any alert.
        _ = try await producer.send(Fixture.examples(count: 320).map {
            OutgoingRecord(topic: topics.labeled, key: Array($0.entity.utf8), value: $0.bytes)
        })
        try await waitUntil("version 1 from the labels") { await versions().count == 1 }

        let snapshot = MonitoringRecord(kind: .snapshot, modelVersion: 1, eventTimeMs: Fixture.startMs, metrics: ["auc": 0.7])
        try await monitor([snapshot, Self.alert("drift-x1", .drift, feature: "x1")])
        try await waitUntil("version 2 from the drift alert") { await versions().count == 2 }
        let drift = try #require(await versions().last)
        #expect(drift.trigger == "drift_alert")
        #expect(Self.triggerIds(drift) == ["alert:drift-x1"])
        let reason = drift.lineage["triggers"]?.arrayValue?.first?["reason"]?.stringValue ?? ""
        #expect(reason.hasPrefix("drift alert drift-x1 opened on x1: 0.3100 crossed 0.2000"), "\(reason)")
        #expect(drift.card.contains(reason))

        // The same alert again (still open, then resolved) and a label-starvation alert fire nothing;
        // a new performance alert fires the next run, and that run covers it alone.
        try await monitor([
            Self.alert("drift-x1", .drift, feature: "x1"), Self.alert("drift-x1", .drift, state: .resolved, feature: "x1"),
            Self.alert("starving", .labelStarvation), Self.alert("auc-drop", .performanceDrop),
        ])
        try await waitUntil("version 3 from the performance alert") { await versions().count == 3 }
        let performance = try #require(await versions().last)
        #expect(performance.trigger == "performance_alert")
        #expect(Self.triggerIds(performance) == ["alert:auc-drop"])
        #expect(await versions().map(\.trigger) == ["every_labels", "drift_alert", "performance_alert"])
    }

    @Test("alerts read from loop.monitoring while a run is in progress coalesce into the next run; a handled alert never refires")
    func alertsCoalesceDuringARun() async throws {
        let prefix = Broker.uniqueTopic("rt-alert-coalesce")
        let config = try Fixture.config(prefix: prefix, retraining: Self.gate)
        let inRun = Latch()
        let release = Latch()
        let publications = Mutex(0)
        // The first registry change holds at its first step until the test releases it: a run in progress.
        let harness = try await Harness.make(config: config, storePath: ":memory:") { step, _ in
            guard step == .journaled, publications.withLock({ count in count += 1; return count == 1 }) else { return }
            await inRun.open()
            await release.wait()
        }
        try await harness.ingestor.process(Fixture.records(Fixture.examples(count: 400), topic: config.topics.names.labeled))
        let monitoring = config.topics.names.monitoring
        _ = try await harness.producer.send([
            Self.alert("a", .drift, feature: "x2"), Self.alert("b", .estimatedPerformanceDrop), Self.alert("a", .drift, feature: "x2"),
            Self.alert("c", .drift, feature: "x1"),
        ].map { OutgoingRecord(topic: monitoring, key: nil, value: $0.bytes) })
        let records = try await harness.consumeAll(monitoring)
        #expect(records.count == 4)
        let listener = AlertListener(store: harness.store, coordinator: harness.coordinator, enabled: true, logger: Fixture.logger)

        try await harness.working {
            #expect(try await listener.process(Array(records.prefix(1))).map(\.id) == ["alert:a"])
            await inRun.wait()
            // Run 1 (alert a) is publishing; b, a again and c arrive now.
            let during = try await listener.process(Array(records.dropFirst()))
            #expect(during.map(\.id) == ["alert:b", "alert:c"])
            #expect(try harness.store.pendingTriggers().map(\.id) == ["alert:a", "alert:b", "alert:c"])
            await release.open()
            try await waitUntil("both runs published") { try harness.store.pendingTriggers().isEmpty }
        }
        // Each version as first published (a later record of version 1 only retires it).
        let versions = Self.firstRecords(try await harness.publishedRegistry().versions)
        #expect(versions.map(\.version) == [1, 2])
        #expect(versions.map(Self.triggerIds) == [["alert:a"], ["alert:b", "alert:c"]])
        #expect(versions.map(\.trigger) == ["drift_alert", "performance_alert+drift_alert"])
        #expect(try await listener.process(records).isEmpty, "handled alerts are remembered")
    }

    @Test("the wall-clock schedule (a hand-stepped clock) fires once per interval, and triggers that come round before the run starts coalesce")
    func wallClockSchedule() async throws {
        let prefix = Broker.uniqueTopic("rt-schedule")
        let config = try Fixture.config(prefix: prefix, retraining: "everyWallClock: 1h\n" + Self.gate)
        let schedule = try #require(WallClockSchedule(policy: config.retraining))
        #expect(schedule.interval == .seconds(3600))
        #expect(WallClockSchedule(policy: try Fixture.config(retraining: Self.gate).retraining) == nil)

        let harness = try await Harness.make(config: config, storePath: ":memory:")
        try await harness.ingestor.process(Fixture.records(Fixture.examples(count: 400), topic: config.topics.names.labeled))
        let ticker = ManualTicker()
        let intervals = Mutex<[Duration]>([])
        let clock = Mutex(Fixture.startMs)
        let running = Task {
            try await schedule.run(
                into: harness.coordinator,
                sleep: { interval in
                    intervals.withLock { $0.append(interval) }
                    try await ticker.sleep()
                },
                now: { clock.withLock { $0 += 3_600_000; return $0 } })
        }
        defer { running.cancel() }
        @Sendable func pending() throws -> [String] { try harness.store.pendingTriggers().map(\.id) }
        let hour = Fixture.hourMs
        try await waitUntil("the schedule sleeping") { await ticker.sleeps == 1 }
        #expect(try pending().isEmpty, "nothing fires before the first interval has passed")
        for n in 1...3 {
            await ticker.tick()
            try await waitUntil("interval \(n)") { await ticker.sleeps == n + 1 }
            #expect(try pending() == (1...n).map { "schedule:\(Fixture.startMs + Int64($0) * hour)" })
        }
        #expect(intervals.withLock { $0 } == [Duration](repeating: .seconds(3600), count: 4))

        try await harness.working {
            // The three firings waited for the worker: one run covers them all.
            try await waitUntil("the coalesced run") { try pending().isEmpty }
            await ticker.tick()
            try await waitUntil("interval 4") { await ticker.sleeps == 5 }
            try await waitUntil("the next run") { try pending().isEmpty }
        }
        let versions = Self.firstRecords(try await harness.publishedRegistry().versions)
        #expect(versions.map(\.version) == [1, 2])
        #expect(versions.map(\.trigger) == ["schedule", "schedule"])
        #expect(versions.map(Self.triggerIds) == [
            (1...3).map { "schedule:\(Fixture.startMs + Int64($0) * hour)" }, ["schedule:\(Fixture.startMs + 4 * hour)"],
        ])
        let reason = versions[0].lineage["triggers"]?.arrayValue?.first?["reason"]?.stringValue ?? ""
        #expect(reason.hasPrefix("wall-clock schedule (every 1h) at "), "\(reason)")
        running.cancel()
        await #expect(throws: CancellationError.self) { try await running.value }
    }
}

import Contracts
import Foundation
import Kafka
import Learning
import Testing
import TestSupport
@testable import Retrainer

@Suite("Retrainer with a broker", .serialized)
struct RetrainerIntegrationTests {
    static let retraining = """
        everyEventTime: 1d
        holdoutShare: 0.25
        gate: { metric: auc, minHoldout: 50, minImprovement: 0.0, maxCalibrationError: 0.3 }
        """

    @Test("a replay at different speeds retrains at the same event-time points on the same data")
    func eventTimeReplayIsDeterministic() async throws {
        // 3 days and a bit of examples every 10 minutes: the day boundaries fire three runs.
        let examples = Fixture.examples(count: 460, spacingMs: 600_000)
        func replay(batchSize: Int) async throws -> [ModelVersionRecord] {
            let prefix = Broker.uniqueTopic("rt-replay")
            let config = try Fixture.config(prefix: prefix, retraining: Self.retraining)
            let harness = try await Harness.make(config: config, storePath: ":memory:")
            let records = Fixture.records(examples, topic: config.topics.names.labeled)
            try await harness.working {
                var start = 0
                while start < records.count {
                    try await harness.ingestor.process(Array(records[start..<min(start + batchSize, records.count)]))
                    start += batchSize
                }
            }
            return try await harness.publishedRegistry().versions
        }
        let slow = try await replay(batchSize: 1)
        let fast = try await replay(batchSize: 460)
        // One run per day boundary crossed after the first example.
        let day = 24 * Fixture.hourMs
        let boundaries = (examples.first!.eventTimeMs / day + 1)...(examples.last!.eventTimeMs / day)
        #expect(slow.map(\.version) == Array(1...Int64(boundaries.count)))
        #expect(slow.allSatisfy { $0.trigger == "event_time" })
        #expect(slow.compactMap { $0.lineage["data"]?["cutoffEventTimeMs"]?.int64Value } == boundaries.map { $0 * day })
        #expect(slow.map { $0.lineage["triggerIds"] } == fast.map { $0.lineage["triggerIds"] })
        func dataRange(_ record: ModelVersionRecord) -> JSONValue? {
            guard var data = record.lineage["data"]?.objectValue else { return nil }
            data.removeValue(forKey: "topic")
            return .object(data)
        }
        #expect(slow.map(dataRange) == fast.map(dataRange))
        #expect(slow.map { $0.lineage["examples"] } == fast.map { $0.lineage["examples"] })
        #expect(slow.map(\.artifact) == fast.map(\.artifact), "training is deterministic for the same data")
        // Early runs have too small a holdout and are rejected, so there is no champion to be a parent yet.
        #expect(slow.map(\.status) == fast.map(\.status))
        #expect(slow.map(\.parent) == fast.map(\.parent))
        #expect(slow.contains { $0.status == .champion })
        #expect(slow[0].card.contains("# Model card: retrainer-test version 1"))
    }

    @Test("manual triggers before a run coalesce; promotion and rollback publish the registry state and audit")
    func coalesceRollbackAudit() async throws {
        let prefix = Broker.uniqueTopic("rt-registry")
        let config = try Fixture.config(prefix: prefix, retraining: Self.retraining.replacingOccurrences(of: "everyEventTime: 1d\n", with: ""))
        let harness = try await Harness.make(config: config, storePath: ":memory:")
        let topic = config.topics.names.labeled
        try await harness.ingestor.process(Fixture.records(Fixture.examples(count: 400), topic: topic))
        @Sendable func manual(_ name: String) -> Trigger {
            Trigger(id: "manual:\(name)", kind: .manual, reason: "asked by \(name)", requestedAtMs: 1, actor: name)
        }
        // Queued before the worker starts: the first schedules a run, the others join it.
        #expect(try await harness.coordinator.request(manual("a")) == .scheduled)
        #expect(try await harness.coordinator.request(manual("b")) == .coalesced)
        #expect(try await harness.coordinator.request(manual("c")) == .coalesced)
        let reports = try await harness.working {
            let deadline = ContinuousClock.now + .seconds(30)
            while try !harness.store.pendingTriggers().isEmpty && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            return await harness.coordinator.requestAndWait(manual("d"))
        }
        #expect(reports.outcome == .published(version: 2, status: .champion))
        #expect(reports.triggers.map(\.id) == ["manual:d"])
        let firstRun = try await harness.publishedRegistry().versions.first
        #expect(firstRun?.lineage["triggerIds"] == .array(["manual:a", "manual:b", "manual:c"]))
        #expect(firstRun?.trigger == "manual")
        #expect(try harness.store.pendingTriggers().isEmpty)

        let promoted = try await harness.registry.promote(1, actor: "ops-alice", reason: "v2 misbehaves")
        #expect(promoted.state?.champion == 1 && promoted.state?.history == [1, 2])
        _ = try await harness.registry.rollback(actor: "ops-bob", reason: "v1 was fine after all, go back")

        let published = try await harness.publishedRegistry()
        let latest = try #require(published.states.last)
        #expect(latest.champion == 2 && latest.history == [1] && latest.revision == 4)
        var latestVersions: [Int64: ModelVersionRecord] = [:]
        for record in published.versions { latestVersions[record.version] = record }
        #expect(latestVersions[2]?.status == .champion && latestVersions[1]?.status == .retired)
        #expect(latestVersions[1]?.reasons.contains("retired: replaced by version 2") == true)
        #expect(try harness.store.indexedVersions().map(\.status) == [.retired, .champion])

        let audit = try await harness.readAll(config.topics.names.audit).map { try AuditEntry(bytes: $0.value) }
        #expect(audit.map(\.action) == ["model.promoted", "model.promoted", "model.promoted", "model.rolled_back"])
        #expect(audit.suffix(2).map(\.actor) == ["ops-alice", "ops-bob"])
        #expect(audit.last?.reason == "v1 was fine after all, go back" && audit.last?.target == "model.2")

        // A restarted registry reads the same state back from loop.models.
        let restarted = try await Harness.make(config: config, storePath: ":memory:")
        let book = await restarted.registry.snapshot
        #expect(book.state == latest && book.nextVersion == 3)
    }

    @Test("a process abandoned after a trigger was accepted, before its version was published, loses nothing on restart")
    func restartMidTraining() async throws {
        let prefix = Broker.uniqueTopic("rt-restart")
        let config = try Fixture.config(prefix: prefix, retraining: "everyLabels: 300\nholdoutShare: 0.25\ngate: { minHoldout: 50 }")
        let directory = try Fixture.temporaryDirectory()
        let storePath = directory + "/retrainer.sqlite"
        let examples = Fixture.examples(count: 350)
        let records = Fixture.records(examples, topic: config.topics.names.labeled)
        do {
            // The 300th example fires the trigger; it is stored as pending with the examples. The
            // worker never runs (the process "dies" mid-training), so nothing may be published.
            let crashed = try await Harness.make(config: config, storePath: storePath)
            let result = try crashed.store.ingest(
                records.map { IncomingLabel(example: try? LabeledExample(bytes: $0.value ?? []), partition: 0, offset: $0.offset) }[...],
                topic: config.topics.names.labeled, triggers: crashed.ingestor.triggers, nowMs: 0)
            #expect(result.consumed == 300 && result.fired.map(\.id) == ["every_labels:300"])
        }
        let before = try await Harness.make(config: config, storePath: ":memory:").publishedRegistry()
        #expect(before.versions.isEmpty && before.states.isEmpty)

        let restarted = try await Harness.make(config: config, storePath: storePath)
        #expect(try restarted.store.nextOffsets(topic: config.topics.names.labeled).values.first == 300)
        #expect(try await restarted.coordinator.resumePending() == 1)
        try await restarted.working {
            // The resumed run publishes first; later input would otherwise coalesce into it.
            let deadline = ContinuousClock.now + .seconds(60)
            while try await restarted.publishedRegistry().versions.isEmpty, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            // The consumer resumes at the stored offset with the rest of the records.
            try await restarted.ingestor.process(Array(records[300...]))
            _ = await restarted.coordinator.requestAndWait(
                Trigger(id: "manual:sync", kind: .manual, reason: "flush", requestedAtMs: 0))
        }
        #expect(try restarted.store.exampleCount() == 350)
        let after = try await restarted.publishedRegistry()
        #expect(Set(after.versions.map(\.version)) == [1, 2])
        let first = try #require(after.versions.first)
        #expect(first.trigger == "every_labels")
        #expect(first.lineage["examples"]?["total"]?.int64Value == 300)
        #expect(after.versions.allSatisfy { !$0.card.isEmpty && $0.artifact["model"] != nil })

        // Resuming again finds nothing left to do: the published version covered the trigger.
        let again = try await Harness.make(config: config, storePath: storePath)
        #expect(try await again.coordinator.resumePending() == 0)
    }
}

import Contracts
import Foundation
import Kafka
import Testing
import TestSupport
@testable import Retrainer

@Suite("Registry consistency across a crash", .serialized)
struct RegistryConsistencyTests {
    static let retraining = "everyLabels: 300\nholdoutShare: 0.25\ngate: { minHoldout: 50, minImprovement: -1.0, maxCalibrationError: 0.5 }"

    /// Feeds `records` to a retrainer whose registry stops for good once the version records of
    /// its first change are acknowledged and before the registry state is sent: the moment a
    /// crash would leave `loop.models` half-written. Returns once that moment is reached; the
    /// process is then abandoned (no graceful shutdown, nothing after that step runs).
    static func crashAfterVersionRecords(config: LoopConfig, storePath: String, records: [ConsumedRecord]) async throws {
        let reached = Latch()
        let crashed = try await Harness.make(config: config, storePath: storePath) { step, _ in
            guard step == .recordsPublished else { return }
            await reached.open()
            while true { try? await Task.sleep(for: .seconds(3600)) }
        }
        Task { await crashed.coordinator.work() }
        Task { try await crashed.ingestor.process(records) }
        await reached.wait()
    }

    @Test("in-process abandonment between a version record and the registry state: the restart completes the change, loses no trigger and trains nothing twice")
    func abandonedBetweenRecordAndState() async throws {
        let prefix = Broker.uniqueTopic("rt-crash")
        let config = try Fixture.config(prefix: prefix, retraining: Self.retraining)
        let storePath = try Fixture.temporaryDirectory() + "/retrainer.sqlite"
        let records = Fixture.records(Fixture.examples(count: 350), topic: config.topics.names.labeled)
        try await Self.crashAfterVersionRecords(config: config, storePath: storePath, records: records)

        // The dangerous moment: version 1 is on loop.models, no registry state names it yet.
        let observer = try await Harness.make(config: config, storePath: ":memory:", restore: false)
        let halfWritten = try await observer.publishedRegistry()
        #expect(halfWritten.versions.map(\.version) == [1] && halfWritten.states.isEmpty)
        #expect(halfWritten.versions.first?.status == .champion)
        #expect(try await observer.readAll(config.topics.names.audit).isEmpty)

        // Restart on the same disk: the journaled change is completed before anything else.
        let restarted = try await Harness.make(config: config, storePath: storePath)
        let completed = try await restarted.publishedRegistry()
        #expect(completed.states.map(\.champion) == [1])
        #expect(completed.versions.map(\.version) == [1, 1], "the version record is re-sent before its state")
        #expect(completed.versions.first == completed.versions.last, "byte-identical: the same complete version")
        #expect(await restarted.registry.snapshot.state.champion == 1)
        let audit = try await restarted.readAll(config.topics.names.audit).map { try AuditEntry(bytes: $0.value) }
        #expect(audit.map(\.action) == ["model.promoted"] && audit.first?.target == "model.1")
        #expect(try await restarted.readRegistry().repair() == nil, "a fresh reader sees a consistent registry")

        // Nothing lost: the examples and offsets stored before the crash are there, the trigger the
        // completed version covers is not trained again, and the rest of the input carries on.
        #expect(try restarted.store.exampleCount() == 300)
        #expect(try restarted.store.nextOffsets(topic: config.topics.names.labeled).values.first == 300)
        #expect(try await restarted.coordinator.resumePending() == 0)
        #expect(try restarted.store.pendingTriggers().isEmpty)
        try await restarted.working {
            try await restarted.ingestor.process(Array(records[300...]))
            _ = await restarted.coordinator.requestAndWait(
                Trigger(id: "manual:after", kind: .manual, reason: "after the restart", requestedAtMs: 0))
        }
        let after = try await restarted.publishedRegistry()
        #expect(Set(after.versions.map(\.version)) == [1, 2])
        #expect(after.versions.last?.lineage["examples"]?["total"]?.int64Value == 350)
        #expect(after.states.last?.champion == 2 && after.states.last?.history == [1])
        #expect(try restarted.store.journaledRegistryChange() == nil)
    }

    @Test("in-process abandonment between a version record and the registry state, restarted on an empty disk: the half-written version is retired, never served")
    func abandonedThenRestartedWithoutTheJournal() async throws {
        let prefix = Broker.uniqueTopic("rt-crash-nodisk")
        let config = try Fixture.config(prefix: prefix, retraining: Self.retraining)
        let storePath = try Fixture.temporaryDirectory() + "/retrainer.sqlite"
        let records = Fixture.records(Fixture.examples(count: 320), topic: config.topics.names.labeled)
        try await Self.crashAfterVersionRecords(config: config, storePath: storePath, records: records)

        let restarted = try await Harness.make(config: config, storePath: ":memory:")
        let book = await restarted.registry.snapshot
        #expect(book.state.champion == nil)
        #expect(book.versions[1]?.status == .retired)
        #expect(book.versions[1]?.reasons.last?.hasPrefix("repaired: status champion disagreed") == true)
        #expect(try await restarted.readRegistry().repair() == nil, "the repair is published")
        let audit = try await restarted.readAll(config.topics.names.audit).map { try AuditEntry(bytes: $0.value) }
        #expect(audit.map(\.action) == ["registry.repaired"])
        #expect(book.nextVersion == 2, "the number stays used")
    }

    @Test("a registry state naming a version loop.models does not hold is not served: the last complete state is restored")
    func stateNamingAMissingVersion() async throws {
        let prefix = Broker.uniqueTopic("rt-missing")
        let config = try Fixture.config(prefix: prefix, retraining: Self.retraining)
        let first = try await Harness.make(config: config, storePath: ":memory:")
        try await first.working {
            try await first.ingestor.process(Fixture.records(Fixture.examples(count: 320), topic: config.topics.names.labeled))
        }
        #expect(await first.registry.snapshot.state.champion == 1)
        // A writer that lost its version record: the state names version 7, which does not exist.
        let orphan = RegistryState(champion: 7, canary: nil, canaryShare: 0, shadows: [], history: [1], revision: 2)
        _ = try await first.producer.send([
            OutgoingRecord(topic: config.topics.names.models, key: Array(RegistryState.key.utf8), value: orphan.bytes, partition: 0)
        ])

        let restarted = try await Harness.make(config: config, storePath: ":memory:")
        let state = await restarted.registry.snapshot.state
        #expect(state.champion == 1 && state.history == [] && state.revision == 3)
        #expect(await restarted.registry.snapshot.versions[1]?.status == .champion)
        #expect(try await restarted.publishedRegistry().states.last == state)
    }
}

@Suite("Registry repair")
struct RegistryRepairTests {
    func record(_ version: Int64, _ status: ModelStatus) -> ModelVersionRecord {
        ModelVersionRecord(
            version: version, status: status, parent: nil, trigger: "manual", createdAtMs: 0, reasons: [], lineage: [:],
            artifact: [:], card: "")
    }

    func book(_ records: [ModelVersionRecord], states: [RegistryState]) throws -> RegistryBook {
        var book = RegistryBook()
        for record in records { try book.read(key: ModelVersionRecord.key(version: record.version), value: record.bytes) }
        for state in states { try book.read(key: RegistryState.key, value: state.bytes) }
        return book
    }

    @Test("a promotion whose state never landed: the records are put back to what the state says")
    func interruptedPromotion() throws {
        let state = RegistryState(champion: 1, canary: 2, canaryShare: 0.1, shadows: [3], history: [], revision: 3)
        // Records of "promote 2" were written (1 retired, 2 champion); the state still says 1 and canary 2.
        let book = try book([record(1, .retired), record(2, .champion), record(3, .shadow), record(4, .rejected)], states: [state])
        let repair = try #require(book.repair())
        #expect(repair.state == nil)
        #expect(repair.records.map(\.version) == [1, 2])
        #expect(repair.records.map(\.status) == [.champion, .canary])
        var repaired = book
        repaired.apply(repair)
        #expect(repaired.repair() == nil)
    }

    @Test("a consistent registry needs no repair")
    func consistent() throws {
        let state = RegistryState(champion: 2, canary: nil, canaryShare: 0, shadows: [], history: [1], revision: 2)
        #expect(try book([record(1, .retired), record(2, .champion), record(3, .rejected)], states: [state]).repair() == nil)
        #expect(RegistryBook().repair() == nil)
    }
}

import Contracts
import Foundation
import Kafka
import Learning
import Logging
import ServiceKit

/// The registry as a value: every version by number and the serving state, with the transitions
/// (admit, promote, rollback) computed as changes to publish. Nothing changes until a change has
/// been published and ``apply(_:)``-ed, so a failed publish leaves the registry as it was.
public struct RegistryBook: Sendable, Equatable {
    /// One change of the registry: the version records to (re)write, then the new serving state
    /// (`nil` when it does not change), and what to audit.
    public struct Change: Sendable, Equatable {
        public var records: [ModelVersionRecord]
        public var state: RegistryState?
        /// `model.rejected`, `model.canary`, `model.promoted` or `model.rolled_back`.
        public var action: String
        /// The version the change is about.
        public var version: Int64
        public var reason: String
    }

    public private(set) var versions: [Int64: ModelVersionRecord] = [:]
    public private(set) var state: RegistryState = .empty
    /// Every registry state read from `loop.models`, oldest first (``repair()`` falls back on them).
    private var statesRead: [RegistryState] = []

    public init() {}

    /// The number the next new version gets: one more than any version ever published.
    public var nextVersion: Int64 { (versions.keys.max() ?? 0) + 1 }

    /// The current champion's record.
    public var champion: ModelVersionRecord? { state.champion.flatMap { versions[$0] } }

    /// Reads one record of `loop.models` (later records of a key replace earlier ones).
    public mutating func read(key: String, value: [UInt8]?) throws(RetrainerError) {
        guard let value else { return }
        do {
            if key == RegistryState.key {
                state = try RegistryState(bytes: value)
                statesRead.append(state)
            } else if key.hasPrefix("model.") {
                let record = try ModelVersionRecord(bytes: value)
                versions[record.version] = record
            }
        } catch {
            throw RetrainerError(.malformedRecord, "loop.models record \(key) is unreadable: \(error)")
        }
    }

    /// Makes `change` the registry's content (after it was published).
    public mutating func apply(_ change: Change) {
        for record in change.records { versions[record.version] = record }
        if let newState = change.state { state = newState }
    }

    // MARK: - Repair

    /// The change that makes what was read from `loop.models` consistent, or `nil` when it is.
    ///
    /// The registry state is the commit point of every change: version records are written first,
    /// the state naming them last. Two inconsistencies can remain when a writer stopped part-way
    /// and its journal is gone (lost disk), or when records were lost:
    /// - The latest state names a serving version (champion, canary, shadow) with no record:
    ///   readers cannot serve it (the scorer keeps its previous models), so the newest earlier
    ///   state whose serving versions all exist is restored, under a new revision.
    /// - A record's status disagrees with the state: it is rewritten to what the state says; a
    ///   record claiming to serve that no state names (its change never committed) is retired.
    public func repair() -> Change? {
        func servable(_ candidate: RegistryState) -> Bool {
            ([candidate.champion, candidate.canary].compactMap { $0 } + candidate.shadows).allSatisfy { versions[$0] != nil }
        }
        var target = state
        var reasons: [String] = []
        if !servable(state) {
            target = statesRead.last(where: servable) ?? .empty
            target.history.removeAll { versions[$0] == nil }
            target.revision = state.revision + 1
            reasons.append("registry revision \(state.revision) names a version loop.models does not hold; revision \(target.revision) serves what the last complete state served")
        }
        var records: [ModelVersionRecord] = []
        for version in versions.keys.sorted() {
            guard var record = versions[version] else { continue }
            let expected: ModelStatus
            if target.champion == version {
                expected = .champion
            } else if target.canary == version {
                expected = .canary
            } else if target.shadows.contains(version) {
                expected = .shadow
            } else if [.champion, .canary, .shadow].contains(record.status) {
                expected = .retired
            } else {
                expected = record.status
            }
            guard expected != record.status else { continue }
            let note = "repaired: status \(record.status.rawValue) disagreed with registry revision \(target.revision), which makes it \(expected.rawValue)"
            record.status = expected
            record.reasons.append(note)
            records.append(record)
            reasons.append("version \(version): \(note)")
        }
        guard !reasons.isEmpty else { return nil }
        return Change(
            records: records, state: target == state ? nil : target, action: "registry.repaired",
            version: target.champion ?? records.first?.version ?? 0, reason: reasons.joined(separator: "; "))
    }

    // MARK: - Transitions

    /// Adds a new gated version: rejected versions leave the serving state alone; a passing one
    /// becomes the canary (retiring the previous canary) when `canaryShare > 0`, else the champion.
    public func admitting(_ record: ModelVersionRecord, passed: Bool, canaryShare: Double) -> Change {
        var record = record
        guard passed else {
            record.status = .rejected
            return Change(records: [record], state: nil, action: "model.rejected", version: record.version,
                          reason: record.reasons.joined(separator: "; "))
        }
        if canaryShare > 0 {
            var records: [ModelVersionRecord] = []
            var newState = state
            if let old = state.canary, var previous = versions[old] {
                previous.status = .retired
                previous.reasons.append("retired: canary replaced by version \(record.version)")
                records.append(previous)
            }
            record.status = .canary
            records.append(record)
            newState.canary = record.version
            newState.canaryShare = canaryShare
            newState.revision += 1
            return Change(records: records, state: newState, action: "model.canary", version: record.version,
                          reason: "passed the gate; canary on \(format(canaryShare)) of requests")
        }
        var change = crowning(record, reason: "passed the gate")
        change.action = "model.promoted"
        return change
    }

    /// Makes an existing version the champion (the current one is retired and remembered for rollback).
    public func promoting(_ version: Int64, reason: String) throws(RetrainerError) -> Change {
        guard let record = versions[version] else {
            throw RetrainerError(.unknownVersion, "model version \(version) does not exist")
        }
        guard state.champion != version else {
            throw RetrainerError(.invalidTransition, "model version \(version) is already the champion")
        }
        return crowning(record, reason: reason)
    }

    /// Restores the previous champion; the current one is retired.
    public func rollingBack(reason: String) throws(RetrainerError) -> Change {
        guard let previous = state.history.last, var restored = versions[previous] else {
            throw RetrainerError(.invalidTransition, "there is no previous champion to roll back to")
        }
        var records: [ModelVersionRecord] = []
        var newState = state
        if let current = state.champion, var demoted = versions[current] {
            demoted.status = .retired
            demoted.reasons.append("rolled back: \(reason)")
            records.append(demoted)
        }
        restored.status = .champion
        restored.reasons.append("restored by rollback: \(reason)")
        records.append(restored)
        newState.history.removeLast()
        newState.champion = previous
        if newState.canary == previous {
            newState.canary = nil
            newState.canaryShare = 0
        }
        newState.shadows.removeAll { $0 == previous }
        newState.revision += 1
        return Change(records: records, state: newState, action: "model.rolled_back", version: previous, reason: reason)
    }

    private func crowning(_ record: ModelVersionRecord, reason: String) -> Change {
        var record = record
        var records: [ModelVersionRecord] = []
        var newState = state
        if let old = state.champion, old != record.version {
            newState.history.append(old)
            if var previous = versions[old] {
                previous.status = .retired
                previous.reasons.append("retired: replaced by version \(record.version)")
                records.append(previous)
            }
        }
        if newState.canary == record.version {
            newState.canary = nil
            newState.canaryShare = 0
        }
        newState.shadows.removeAll { $0 == record.version }
        newState.champion = record.version
        newState.revision += 1
        record.status = .champion
        if record.version < nextVersion { record.reasons.append("promoted: \(reason)") }
        records.append(record)
        return Change(records: records, state: newState, action: "model.promoted", version: record.version, reason: reason)
    }
}

// MARK: - Journal

extension RegistryBook.Change {
    /// The change and who made it as journal text (canonical JSON).
    func journal(actor: String) -> String {
        let object: JSONValue = [
            "records": .array(records.map(\.json)), "state": state?.json ?? .null, "action": .string(action),
            "version": .int(version), "reason": .string(reason), "actor": .string(actor),
        ]
        return object.canonicalString
    }

    /// A change read back from ``journal(actor:)`` text, with its actor.
    static func fromJournal(_ text: String) throws(RetrainerError) -> (change: Self, actor: String) {
        do {
            let object = try JSONValue.parse(text)
            let records = try (object["records"]?.arrayValue ?? []).map { try ModelVersionRecord(bytes: $0.canonicalBytes()) }
            let state = try object["state"].flatMap { $0 == .null ? nil : $0 }.map { try RegistryState(bytes: $0.canonicalBytes()) }
            guard let action = object["action"]?.stringValue, let version = object["version"]?.int64Value,
                  let reason = object["reason"]?.stringValue, let actor = object["actor"]?.stringValue
            else { throw RetrainerError(.malformedRecord, "the journaled registry change lacks action, version, reason or actor") }
            return (Self(records: records, state: state, action: action, version: version, reason: reason), actor)
        } catch let error as RetrainerError {
            throw error
        } catch {
            throw RetrainerError(.malformedRecord, "the journaled registry change is unreadable: \(error)")
        }
    }
}

// MARK: - Registry

/// The registry kept on `loop.models` (single partition, compacted): publishes every version and
/// then the serving state, keeps a local index in the training store and writes every change to
/// `loop.audit`. Changes run one at a time.
///
/// A change is journaled in the training store before anything is sent, its version records are
/// sent and acknowledged before the registry state that commits it, and the journal is cleared
/// once the change is audited. A change interrupted part-way (the process stopped, or the broker
/// failed between the records and the state) is completed from the journal before the next
/// change and at restart, so readers never keep a version record that the registry state
/// contradicts; ``RegistryBook/repair()`` handles what the journal cannot (a lost disk).
public actor ModelRegistry {
    /// A point in the publication of a change, reported to the registry's observer.
    public enum Step: Sendable, Equatable {
        /// The change is journaled; nothing is sent yet.
        case journaled
        /// Its version records are acknowledged by `loop.models`; the registry state is not sent yet.
        case recordsPublished
    }

    private let producer: KafkaProducer
    private let topic: String
    private let audit: AuditLog
    private let store: TrainingStore
    private let logger: Logger
    private let observe: @Sendable (Step, RegistryBook.Change) async -> Void
    private var book = RegistryBook()
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// A registry writing to `topics.models` with `producer`, auditing with `audit` and indexing
    /// and journaling in `store`. `observe` is told when a change reaches each ``Step`` and the
    /// change waits for it to return (tests stop or hold a process there).
    public init(
        producer: KafkaProducer, topics: Topics, audit: AuditLog, store: TrainingStore, logger: Logger,
        observe: @escaping @Sendable (Step, RegistryBook.Change) async -> Void = { _, _ in }
    ) {
        self.producer = producer
        self.topic = topics.models
        self.audit = audit
        self.store = store
        self.logger = logger
        self.observe = observe
    }

    /// The registry as last published.
    public var snapshot: RegistryBook { book }

    /// Rebuilds the registry by reading `loop.models` from the beginning to its end, completes a
    /// change a previous process left journaled, repairs what is inconsistent, then refreshes the
    /// local index from it (the topic is the source of truth).
    public func restore(kafka: KafkaConfig) async throws {
        let reader = try PartitionReader(config: kafka, partitions: [TopicPartition(topic: topic, partition: 0)], logger: logger)
        var restored = RegistryBook()
        reading: for try await event in reader.events() {
            switch event {
            case .records(let records):
                for record in records {
                    try restored.read(key: String(decoding: record.key ?? [], as: UTF8.self), value: record.value)
                }
            case .caughtUp:
                break reading
            }
        }
        await reader.close()
        await acquire()
        defer { release() }
        book = restored
        try await completeJournaledChange()
        if let repair = book.repair() {
            logger.warning("loop.models was inconsistent; publishing a repair", metadata: ["registry.repair": "\(repair.reason)"])
            try await publish(repair, actor: "system")
        }
        try store.indexVersions(Array(book.versions.values))
        logger.info("registry restored", metadata: [
            "registry.versions": "\(book.versions.count)", "registry.champion": "\(book.state.champion.map(String.init) ?? "none")",
            "registry.revision": "\(book.state.revision)",
        ])
    }

    /// Publishes a new version built by `make` with the next version number and the current
    /// registry, then the serving state its gate verdict leads to.
    public func publishNew(
        passed: Bool, canaryShare: Double, actor: String,
        _ make: @Sendable (_ version: Int64, _ registry: RegistryBook) throws -> ModelVersionRecord
    ) async throws -> RegistryBook.Change {
        await acquire()
        defer { release() }
        try await completeJournaledChange()
        let record = try make(book.nextVersion, book)
        let change = book.admitting(record, passed: passed, canaryShare: canaryShare)
        try await publish(change, actor: actor)
        return change
    }

    /// Makes `version` the champion.
    public func promote(_ version: Int64, actor: String, reason: String) async throws -> RegistryBook.Change {
        await acquire()
        defer { release() }
        try await completeJournaledChange()
        let change = try book.promoting(version, reason: reason)
        try await publish(change, actor: actor)
        return change
    }

    /// Restores the previous champion.
    public func rollback(actor: String, reason: String) async throws -> RegistryBook.Change {
        await acquire()
        defer { release() }
        try await completeJournaledChange()
        let change = try book.rollingBack(reason: reason)
        try await publish(change, actor: actor)
        return change
    }

    /// Completes the journaled change, if an earlier attempt was interrupted; returns whether there was one.
    @discardableResult
    public func completeInterruptedChange() async throws -> Bool {
        await acquire()
        defer { release() }
        return try await completeJournaledChange()
    }

    // MARK: - Publishing

    @discardableResult
    private func completeJournaledChange() async throws -> Bool {
        guard let text = try store.journaledRegistryChange() else { return false }
        let (change, actor) = try RegistryBook.Change.fromJournal(text)
        if let state = change.state, state.revision < book.state.revision {
            logger.warning("a stale journaled registry change was dropped", metadata: [
                "registry.action": "\(change.action)", "registry.revision": "\(state.revision)",
                "registry.published_revision": "\(book.state.revision)",
            ])
            try store.clearRegistryJournal()
            return false
        }
        logger.warning("completing an interrupted registry change", metadata: [
            "registry.action": "\(change.action)", "registry.version": "\(change.version)",
        ])
        try await publish(change, actor: actor, journaled: true)
        return true
    }

    private func publish(_ change: RegistryBook.Change, actor: String, journaled: Bool = false) async throws {
        if !journaled { try store.journalRegistryChange(change.journal(actor: actor)) }
        await observe(.journaled, change)
        try await send(change.records.map {
            OutgoingRecord(topic: topic, key: Array(ModelVersionRecord.key(version: $0.version).utf8), value: $0.bytes, partition: 0)
        })
        await observe(.recordsPublished, change)
        if let state = change.state {
            try await send([OutgoingRecord(topic: topic, key: Array(RegistryState.key.utf8), value: state.bytes, partition: 0)])
        }
        book.apply(change)
        do {
            try store.indexVersions(change.records)
        } catch {
            logger.error("local registry index not updated (rebuilt from loop.models at restart)", metadata: ["error.message": "\(error)"])
        }
        let state = change.state ?? book.state
        try await audit.record(
            actor: actor, action: change.action, target: ModelVersionRecord.key(version: change.version), reason: change.reason,
            details: [
                "champion": JSONValue(state.champion), "canary": JSONValue(state.canary),
                "revision": .int(state.revision), "history": .array(state.history.map { .int($0) }),
            ])
        try store.clearRegistryJournal()
        logger.info("registry changed", metadata: [
            "registry.action": "\(change.action)", "registry.version": "\(change.version)", "registry.actor": "\(actor)",
            "registry.champion": "\(state.champion.map(String.init) ?? "none")", "registry.revision": "\(state.revision)",
        ])
    }

    private func send(_ records: [OutgoingRecord]) async throws {
        guard !records.isEmpty else { return }
        do {
            _ = try await producer.send(records)
        } catch {
            throw RetrainerError(
                .publishing, "loop.models did not acknowledge the change (it is completed before the next change): \(error)",
                isRetryable: true)
        }
    }

    private func acquire() async {
        if busy {
            await withCheckedContinuation { waiters.append($0) }
        } else {
            busy = true
        }
    }

    private func release() {
        if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
    }
}

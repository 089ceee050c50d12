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

/// The registry kept on `loop.models` (single partition, compacted): publishes every version and
/// then the serving state, keeps a local index in the training store and writes every change to
/// `loop.audit`. Changes run one at a time.
public actor ModelRegistry {
    private let producer: KafkaProducer
    private let topic: String
    private let audit: AuditLog
    private let store: TrainingStore
    private let logger: Logger
    private var book = RegistryBook()
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// A registry writing to `topics.models` with `producer`, auditing with `audit` and indexing in `store`.
    public init(producer: KafkaProducer, topics: Topics, audit: AuditLog, store: TrainingStore, logger: Logger) {
        self.producer = producer
        self.topic = topics.models
        self.audit = audit
        self.store = store
        self.logger = logger
    }

    /// The registry as last published.
    public var snapshot: RegistryBook { book }

    /// Rebuilds the registry by reading `loop.models` from the beginning to its end, then
    /// refreshes the local index from it (the topic is the source of truth).
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
        book = restored
        try store.indexVersions(Array(restored.versions.values))
        logger.info("registry restored", metadata: [
            "registry.versions": "\(restored.versions.count)", "registry.champion": "\(restored.state.champion.map(String.init) ?? "none")",
            "registry.revision": "\(restored.state.revision)",
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
        let record = try make(book.nextVersion, book)
        let change = book.admitting(record, passed: passed, canaryShare: canaryShare)
        try await publish(change, actor: actor)
        return change
    }

    /// Makes `version` the champion.
    public func promote(_ version: Int64, actor: String, reason: String) async throws -> RegistryBook.Change {
        await acquire()
        defer { release() }
        let change = try book.promoting(version, reason: reason)
        try await publish(change, actor: actor)
        return change
    }

    /// Restores the previous champion.
    public func rollback(actor: String, reason: String) async throws -> RegistryBook.Change {
        await acquire()
        defer { release() }
        let change = try book.rollingBack(reason: reason)
        try await publish(change, actor: actor)
        return change
    }

    private func publish(_ change: RegistryBook.Change, actor: String) async throws {
        var outgoing = change.records.map {
            OutgoingRecord(topic: topic, key: Array(ModelVersionRecord.key(version: $0.version).utf8), value: $0.bytes, partition: 0)
        }
        if let state = change.state {
            outgoing.append(OutgoingRecord(topic: topic, key: Array(RegistryState.key.utf8), value: state.bytes, partition: 0))
        }
        do {
            _ = try await producer.send(outgoing)
        } catch {
            throw RetrainerError(.publishing, "loop.models did not acknowledge the change: \(error)", isRetryable: true)
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
        logger.info("registry changed", metadata: [
            "registry.action": "\(change.action)", "registry.version": "\(change.version)", "registry.actor": "\(actor)",
            "registry.champion": "\(state.champion.map(String.init) ?? "none")", "registry.revision": "\(state.revision)",
        ])
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

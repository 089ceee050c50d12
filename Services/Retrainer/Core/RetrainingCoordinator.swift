import Contracts
import Foundation
import Learning
import Logging

/// What one training run did.
public struct RunReport: Sendable, Equatable {
    /// How the run ended.
    public enum Outcome: Sendable, Equatable {
        /// A version was published with this status (`rejected`, `canary` or `champion`).
        case published(version: Int64, status: ModelStatus)
        /// No version: the data cannot train a model (e.g. one class only). Not retried.
        case skipped(reason: String)
        /// The run failed on storage or Kafka; its triggers stay pending, join the next run and are
        /// resumed after a restart.
        case failed(reason: String)
    }

    /// The triggers the run covered, coalesced, in arrival order.
    public var triggers: [Trigger]
    public var outcome: Outcome
    /// Time spent training and evaluating, in seconds.
    public var trainingSeconds: Double
}

/// Runs training one run at a time: triggers queue and coalesce (``TriggerQueue``), every
/// trigger is stored as pending until a run covers it, so a crash mid-training loses none, and a
/// version is published (with its lineage and card) only once complete.
public actor RetrainingCoordinator {
    private let store: TrainingStore
    private let registry: ModelRegistry
    private let trainer: ModelTrainer
    private let policy: RetrainingPolicy
    private let deployment: String
    private let labeledTopic: String
    private let logger: Logger
    private let onReport: @Sendable (RunReport) -> Void
    private var queue = TriggerQueue()
    /// Triggers of a failed run: they join the next run (they also stay stored as pending).
    private var retry: [Trigger] = []
    private var waitingForNext: [CheckedContinuation<RunReport, Never>] = []
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    /// A coordinator training `config`'s model on `store`'s examples into `registry`; `onReport`
    /// is told about every finished run (metrics, logs).
    public init(
        config: LoopConfig, store: TrainingStore, registry: ModelRegistry, logger: Logger,
        onReport: @escaping @Sendable (RunReport) -> Void = { _ in }
    ) {
        self.store = store
        self.registry = registry
        self.trainer = ModelTrainer(config: config)
        self.policy = config.retraining
        self.deployment = config.name
        self.labeledTopic = config.topics.names.labeled
        self.logger = logger
        self.onReport = onReport
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Stores `trigger` as pending and queues it; returns whether it started a new run or joined one.
    @discardableResult
    public func request(_ trigger: Trigger) throws(RetrainerError) -> TriggerQueue.Disposition {
        try store.addPendingTriggers([trigger])
        return enqueue(trigger)
    }

    /// Queues an already stored trigger (``TrainingStore/ingest(_:topic:triggers:nowMs:)`` stores
    /// stream triggers with their examples) and waits for the run that covers it.
    public func requestAndWait(_ trigger: Trigger) async -> RunReport {
        await withCheckedContinuation { continuation in
            waitingForNext.append(continuation)
            enqueue(trigger)
        }
    }

    /// Queues the triggers left pending by an earlier process, except those a published version
    /// already covers (it was published, then the process stopped before forgetting them).
    /// Returns how many were queued.
    @discardableResult
    public func resumePending() async throws(RetrainerError) -> Int {
        let pending = try store.pendingTriggers()
        let covered = Set(await registry.snapshot.versions.values.flatMap(Self.triggerIds))
        let done = pending.filter { covered.contains($0.id) }.map(\.id)
        if !done.isEmpty { try store.removePendingTriggers(ids: done) }
        let open = pending.filter { !covered.contains($0.id) }
        for trigger in open { enqueue(trigger) }
        if !open.isEmpty {
            logger.info("resuming pending triggers", metadata: ["retrain.triggers": "\(open.map(\.id))"])
        }
        return open.count
    }

    /// Runs queued work until ``finish()``; returns after the run in progress, if any, ends.
    public func work() async {
        for await _ in wakeups {
            while let triggers = queue.begin() {
                let waiters = waitingForNext
                waitingForNext = []
                let report = await execute(triggers)
                queue.end()
                if case .failed = report.outcome { retry = report.triggers }
                onReport(report)
                for waiter in waiters { waiter.resume(returning: report) }
            }
        }
        for waiter in waitingForNext {
            waiter.resume(returning: RunReport(triggers: [], outcome: .failed(reason: "shutting down"), trainingSeconds: 0))
        }
        waitingForNext = []
    }

    /// Ends ``work()`` once the run in progress (if any) ends.
    public func finish() {
        wake.finish()
    }

    @discardableResult
    private func enqueue(_ trigger: Trigger) -> TriggerQueue.Disposition {
        let disposition = queue.enqueue(trigger)
        for earlier in retry { queue.enqueue(earlier) }
        retry = []
        logger.info("retraining requested", metadata: [
            "retrain.trigger": "\(trigger.kind.rawValue)", "retrain.trigger_id": "\(trigger.id)",
            "retrain.reason": "\(trigger.reason)", "retrain.disposition": "\(disposition.rawValue)",
        ])
        wake.yield()
        return disposition
    }

    // MARK: - A run

    private func execute(_ queued: [Trigger]) async -> RunReport {
        do {
            // A version whose publication was interrupted is completed first: it may cover these triggers.
            try await registry.completeInterruptedChange()
        } catch {
            logger.error("an interrupted registry change could not be completed; the run waits", metadata: ["error.message": "\(error)"])
            return RunReport(triggers: queued, outcome: .failed(reason: "\(error)"), trainingSeconds: 0)
        }
        // A trigger a published version already covers (published, then the audit or the store
        // failed) is done: forget it instead of training again.
        let covered = Set(await registry.snapshot.versions.values.flatMap(Self.triggerIds))
        let done = queued.filter { covered.contains($0.id) }
        if !done.isEmpty { try? store.removePendingTriggers(ids: done.map(\.id)) }
        let triggers = queued.filter { !covered.contains($0.id) }
        guard !triggers.isEmpty else {
            return RunReport(triggers: done, outcome: .skipped(reason: "already covered by a published version"), trainingSeconds: 0)
        }
        let cutoff = triggers.compactMap(\.cutoffEventTimeMs).max()
        let started = ContinuousClock.now
        func seconds() -> Double {
            let elapsed = ContinuousClock.now - started
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
        do {
            let examples = try store.trainingExamples(
                cutoffMs: cutoff, lastExamples: policy.trainingExamples,
                lastEventTimeMs: policy.trainingEventTime.map { Int64($0.seconds * 1000) })
            let registryBook = await registry.snapshot
            let champion = registryBook.champion.flatMap { try? ModelArtifact.decode(json: Data($0.artifact.canonicalBytes())) }
            let trainer = self.trainer
            let result: TrainingResult
            do {
                result = try await Task.detached { try trainer.train(examples, champion: champion) }.value
            } catch let error as RetrainerError where error.code == .training {
                try store.removePendingTriggers(ids: triggers.map(\.id))
                logger.warning("retraining skipped", metadata: ["retrain.reason": "\(error.reason)"])
                return RunReport(triggers: triggers, outcome: .skipped(reason: error.reason), trainingSeconds: seconds())
            }
            let trainingSeconds = seconds()
            let (policy, deployment, topic, covered) = (self.policy, self.deployment, self.labeledTopic, triggers)
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let change = try await registry.publishNew(
                passed: result.verdict.passed, canaryShare: policy.canaryShare, actor: "system"
            ) { version, book in
                try VersionRecordBuilder.record(
                    version: version, parent: book.state.champion, triggers: covered, result: result, policy: policy,
                    labeledTopic: topic, cutoffMs: cutoff, deployment: deployment, createdAtMs: now)
            }
            try store.removePendingTriggers(ids: triggers.map(\.id))
            let status = change.records.last { $0.version == change.version }?.status ?? .candidate
            logger.info("retraining published a version", metadata: [
                "model.version": "\(change.version)", "model.status": "\(status.rawValue)",
                "retrain.examples": "\(examples.count)", "retrain.seconds": "\(format(trainingSeconds))",
                "retrain.auc": "\(result.candidate.auc.map(format) ?? "n/a")",
            ])
            return RunReport(
                triggers: triggers, outcome: .published(version: change.version, status: status), trainingSeconds: trainingSeconds)
        } catch {
            logger.error("retraining failed; its triggers stay pending", metadata: ["error.message": "\(error)"])
            return RunReport(triggers: triggers, outcome: .failed(reason: "\(error)"), trainingSeconds: seconds())
        }
    }

    static func triggerIds(_ record: ModelVersionRecord) -> [String] {
        record.lineage["triggerIds"]?.arrayValue?.compactMap(\.stringValue) ?? []
    }
}

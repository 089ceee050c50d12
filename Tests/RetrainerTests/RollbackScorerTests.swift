import Contracts
import Foundation
import Kafka
import Prometheus
import Scorer
import Synchronization
import Testing
import TestSupport
@testable import Retrainer

@Suite("Rollback with a scorer following loop.models", .serialized)
struct RollbackScorerTests {
    @Test("rollback restores the previous champion and a running scorer (in process) serves it again")
    func scorerFollowsRollback() async throws {
        let prefix = Broker.uniqueTopic("rt-rollback")
        let config = try Fixture.config(
            prefix: prefix, retraining: "holdoutShare: 0.25\ngate: { minHoldout: 50, minImprovement: -1.0, maxCalibrationError: 0.5 }")
        let harness = try await Harness.make(config: config, storePath: ":memory:")
        let topic = config.topics.names.labeled
        @Sendable func manual(_ name: String) -> Trigger {
            Trigger(id: "manual:\(name)", kind: .manual, reason: name, requestedAtMs: 0, actor: "ops")
        }
        var options = ScorerOptions()
        options.groupID = Broker.uniqueTopic("rt-rollback-scorer")
        options.consumer.sessionTimeout = .seconds(2)
        options.consumer.heartbeatInterval = .milliseconds(500)
        let scorer = try ScorerPipeline(
            config: config, options: options, kafka: harness.kafka, metrics: PrometheusCollectorRegistry(), logger: Fixture.logger)
        let running = Task { try await scorer.run() }
        try await waitUntil("the scorer owning loop.events") { scorer.ownedPartitions.count == config.topics.partitions }
        let requests = Mutex(0)
        @Sendable func score() async throws -> Prediction {
            let id = requests.withLock { count in
                count += 1
                return "rollback-\(count)"
            }
            return try await scorer.score(ScoreRequest(
                requestId: id, entity: "e-1", eventTimeMs: Fixture.startMs,
                context: JSONObject([("x1", .double(1)), ("x2", .double(-0.5))])))
        }

        // The coordinator works for the whole test (it runs once: finishing it ends it for good).
        try await harness.working {
            // Version 1 on one concept; version 2 after more examples of the opposite concept.
            try await harness.ingestor.process(Fixture.records(Fixture.examples(count: 400), topic: topic))
            let first = await harness.coordinator.requestAndWait(manual("v1"))
            #expect(first.outcome == .published(version: 1, status: .champion))
            try await waitUntil("the scorer serving version 1") { scorer.models.champion?.version == 1 }
            let servedByFirst = try await score()
            #expect(servedByFirst.modelVersion == 1 && servedByFirst.role == .champion)

            try await harness.ingestor.process(Fixture.records(
                Fixture.examples(count: 400, from: 400, weights: (-1, 2)), topic: topic, firstOffset: 400))
            let second = await harness.coordinator.requestAndWait(manual("v2"))
            #expect(second.outcome == .published(version: 2, status: .champion))
            try await waitUntil("the scorer serving version 2") { scorer.models.champion?.version == 2 }
            let servedBySecond = try await score()
            #expect(servedBySecond.modelVersion == 2)
            #expect(abs(servedBySecond.score - servedByFirst.score) > 0.01, "the two champions score differently")

            let change = try await harness.registry.rollback(actor: "ops", reason: "version 2 misbehaves")
            #expect(change.state?.champion == 1 && change.state?.history == [])
            let revision = try #require(change.state?.revision)
            try await waitUntil("the scorer following the rollback") {
                scorer.models.revision == revision && scorer.models.champion?.version == 1
            }
            let servedAfterRollback = try await score()
            #expect(servedAfterRollback.modelVersion == 1 && servedAfterRollback.role == .champion)
            #expect(servedAfterRollback.score == servedByFirst.score, "the restored champion is the same model")
        }

        await scorer.stop()
        try await running.value
    }
}

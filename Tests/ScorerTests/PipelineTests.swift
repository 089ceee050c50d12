import Contracts
import Features
import Foundation
import Kafka
import Learning
import Prometheus
import Scorer
import ServiceKit
import Testing
import TestSupport

/// A deployment on the test broker: its own topic prefix, topics created, features published.
struct Deployment {
    let config: LoopConfig
    let kafka: KafkaConfig
    let producer: KafkaProducer
    let entities: [String]
    static let partitions = 2

    static func make(entities count: Int = 20) async throws -> Deployment {
        let broker = try await Broker.shared()
        let prefix = Broker.uniqueTopic("scorer")
        let config = try Fixtures.config(prefix: prefix, partitions: partitions)
        let kafka = Fixtures.kafka(broker)
        try await TopicLayout(config: config).ensureTopics(kafka: kafka, logger: Fixtures.logger)
        let producer = try KafkaProducer(config: kafka, logger: Fixtures.logger)
        let schema = try Features.FeatureSchema(settings: config.features)
        let entities = (0..<count).map { "entity-\($0)" }
        var records: [OutgoingRecord] = []
        for entity in entities {
            let state = try Fixtures.featureState(entity, schema: schema)
            records.append(OutgoingRecord(topic: config.topics.names.features, key: Array(entity.utf8), value: state.encoded()))
        }
        _ = try await producer.send(records)
        return Deployment(config: config, kafka: kafka, producer: producer, entities: entities)
    }

    var topics: Topics { config.topics.names }

    /// A pipeline in `group`; `featureWait` zero unless a test is about the wait (no feature-store
    /// runs here, so the features of a request's own time never come).
    func pipeline(group: String, featureWait: Duration = .zero, lanes: Int? = nil) throws -> ScorerPipeline {
        var options = ScorerOptions()
        options.groupID = group
        if let lanes {
            options.lanes = lanes
            options.minimumLaneSize = 1
        }
        options.featureWait = featureWait
        options.consumer.sessionTimeout = .seconds(2)
        options.consumer.heartbeatInterval = .milliseconds(500)
        return try ScorerPipeline(
            config: config, options: options, kafka: kafka, metrics: PrometheusCollectorRegistry(), logger: Fixtures.logger)
    }

    /// Runs `pipeline` in the background and waits until it owns every partition.
    func start(_ pipeline: ScorerPipeline) async throws -> Task<Void, any Error> {
        let task = Task { try await pipeline.run() }
        try await Fixtures.waitUntil("partitions assigned") { pipeline.ownedPartitions.count == Self.partitions }
        return task
    }

    /// Sends one request for `entity` and returns its delivery report.
    func send(_ id: String, entity: String, timeMs: Int64) async throws -> DeliveryReport {
        try await producer.send(Fixtures.requestRecord(topic: topics.events, entity: entity, requestId: id, timeMs: timeMs))
    }

    /// Sends requests `ids` (entity chosen round-robin) and returns once acknowledged.
    func send(_ ids: [String], offsetMs: Int64 = 60_000) async throws {
        let base = Int64(Fixtures.t0 * 1000) + offsetMs
        let records = ids.enumerated().map { index, id in
            Fixtures.requestRecord(topic: topics.events, entity: entities[index % entities.count], requestId: id, timeMs: base + Int64(index))
        }
        _ = try await producer.send(records)
    }

    func predictions() async throws -> [(partition: Int32, prediction: Prediction)] {
        try await Fixtures.predictions(topic: topics.predictions, partitions: Self.partitions, kafka: kafka)
    }
}

/// The scorer's data path against the real broker.
@Suite struct PipelineTests {
    @Test func aModelPublishedMidStreamTakesOverWithNoRequestLost() async throws {
        let deployment = try await Deployment.make()
        let pipeline = try deployment.pipeline(group: Broker.uniqueTopic("group"))
        let running = try await deployment.start(pipeline)
        #expect(pipeline.models.champion == nil)

        let before = (0..<1500).map { "before-\($0)" }
        let during = (0..<1500).map { "during-\($0)" }
        let after = (0..<1000).map { "after-\($0)" }
        try await deployment.send(before)
        try await Fixtures.waitUntil("the baseline answering") { pipeline.statistics.predictions > 0 }
        let artifact = try Fixtures.artifact(layout: pipeline.layout, seed: 9)
        async let sentDuring: Void = deployment.send(during, offsetMs: 70_000)
        try await Fixtures.publish(
            [try Fixtures.versionRecord(1, artifact: artifact, status: .champion)],
            state: RegistryState(champion: 1, canary: nil, canaryShare: 0, shadows: [], history: [], revision: 1),
            topic: deployment.topics.models, producer: deployment.producer)
        try await sentDuring
        try await Fixtures.waitUntil("the champion serving") { pipeline.models.champion?.version == 1 }
        try await deployment.send(after, offsetMs: 80_000)
        let total = before.count + during.count + after.count
        try await Fixtures.waitUntil("every prediction") { pipeline.statistics.predictions == total }

        let predictions = try await deployment.predictions()
        #expect(predictions.count == total)
        let ids = predictions.map(\.prediction.requestId)
        #expect(Set(ids) == Set(before + during + after))
        #expect(Set(ids).count == ids.count)
        // Per partition, the baseline answers until the swap and the champion from then on.
        for partition in 0..<Int32(Deployment.partitions) {
            let roles = predictions.filter { $0.partition == partition }.map(\.prediction.role)
            let firstChampion = roles.firstIndex(of: .champion) ?? roles.count
            #expect(roles[..<firstChampion].allSatisfy { $0 == .baseline })
            #expect(roles[firstChampion...].allSatisfy { $0 == .champion })
        }
        let afterSet = Set(after)
        #expect(predictions.filter { afterSet.contains($0.prediction.requestId) }.allSatisfy { $0.prediction.modelVersion == 1 })
        #expect(predictions.contains { $0.prediction.role == .baseline })
        // The features of the assigned partitions were there: nothing routed for missing inputs.
        #expect(predictions.allSatisfy { !$0.prediction.reasons.contains(PredictionReason.missingFeatures) })
        #expect(predictions.allSatisfy { $0.prediction.traceparent != nil })

        await pipeline.stop()
        try await running.value
    }

    /// Batches scored in several lanes: every request answered once, and each partition's
    /// predictions in the order of its requests.
    @Test func lanesKeepEachPartitionsOrder() async throws {
        let deployment = try await Deployment.make()
        let pipeline = try deployment.pipeline(group: Broker.uniqueTopic("group"), lanes: 3)
        let running = try await deployment.start(pipeline)
        let ids = (0..<3000).map { "lane-\($0)" }
        try await deployment.send(ids)
        try await Fixtures.waitUntil("every prediction") { pipeline.statistics.predictions == ids.count }
        let predictions = try await deployment.predictions()
        #expect(predictions.count == ids.count)
        #expect(Set(predictions.map(\.prediction.requestId)) == Set(ids))
        for partition in 0..<Int32(Deployment.partitions) {
            let times = predictions.filter { $0.partition == partition }.map(\.prediction.eventTimeMs)
            #expect(!times.isEmpty)
            #expect(zip(times, times.dropFirst()).allSatisfy { $0 < $1 })
        }
        await pipeline.stop()
        try await running.value
    }

    /// A second instance joins the group and leaves again: the partition it took is removed from
    /// the first instance's `loop.features` reader and, assigned back, read afresh, so requests of
    /// every partition are scored with their features.
    @Test func aPartitionAssignedAgainIsReadAfreshFromTheFeatures() async throws {
        let deployment = try await Deployment.make()
        let group = Broker.uniqueTopic("group")
        let first = try deployment.pipeline(group: group)
        let running = try await deployment.start(first)
        #expect(first.features.entityCount == deployment.entities.count)
        let second = try deployment.pipeline(group: group)
        let secondRunning = Task { try await second.run() }
        try await Fixtures.waitUntil("the partitions shared") {
            first.ownedPartitions.count == 1 && second.ownedPartitions.count == 1
        }
        #expect(first.features.entityCount < deployment.entities.count)
        await second.stop()
        try await secondRunning.value
        try await Fixtures.waitUntil("both partitions back") { first.ownedPartitions.count == Deployment.partitions }
        #expect(first.features.entityCount == deployment.entities.count)
        let ids = (0..<100).map { "back-\($0)" }
        try await deployment.send(ids)
        try await Fixtures.waitUntil("every prediction") { first.statistics.predictions == ids.count }
        let predictions = try await deployment.predictions()
        #expect(Set(predictions.map(\.partition)).count == Deployment.partitions)
        #expect(predictions.allSatisfy { !$0.prediction.reasons.contains(PredictionReason.missingFeatures) })
        await first.stop()
        try await running.value
    }

    @Test func duplicateRequestIdsGetOnePrediction() async throws {
        let deployment = try await Deployment.make()
        let pipeline = try deployment.pipeline(group: Broker.uniqueTopic("group"), lanes: 3)
        let running = try await deployment.start(pipeline)
        let ids = (0..<300).map { "dup-\($0 % 200)" }
        try await deployment.send(ids)
        try await Fixtures.waitUntil("every request read") { pipeline.statistics.requests == ids.count }
        #expect(pipeline.statistics.duplicates == 100)
        #expect(pipeline.statistics.predictions == 200)
        let predictions = try await deployment.predictions()
        #expect(predictions.count == 200)
        #expect(Set(predictions.map(\.prediction.requestId)) == Set(ids))
        // The first of each pair is the one answered (its event time is the earlier one).
        #expect(predictions.allSatisfy { $0.prediction.eventTimeMs < Int64(Fixtures.t0 * 1000) + 60_000 + 200 })
        await pipeline.stop()
        try await running.value
    }

    /// The first instance stops mid-stream; the second joins under a new group id, so it replays
    /// every request from the beginning, as after a crash that lost every commit (in-process).
    @Test func restartMidStreamReplayingEverythingLosesAndDuplicatesNothing() async throws {
        let deployment = try await Deployment.make()
        let first = try deployment.pipeline(group: Broker.uniqueTopic("group"))
        let firstRun = try await deployment.start(first)
        let ids = (0..<4000).map { "restart-\($0)" }
        try await deployment.send(Array(ids[..<2000]))
        try await Fixtures.waitUntil("some predictions") { first.statistics.predictions >= 300 }
        await first.stop()
        try await firstRun.value
        let answeredFirst = first.statistics.predictions
        #expect(answeredFirst >= 300)

        let second = try deployment.pipeline(group: Broker.uniqueTopic("group"))
        let secondRun = try await deployment.start(second)
        try await deployment.send(Array(ids[2000...]), offsetMs: 90_000)
        try await Fixtures.waitUntil("every request read again") { second.statistics.requests == ids.count }
        #expect(second.statistics.duplicates == answeredFirst)
        #expect(answeredFirst + second.statistics.predictions == ids.count)

        let predictions = try await deployment.predictions()
        let seen = predictions.map(\.prediction.requestId)
        #expect(seen.count == ids.count)
        #expect(Set(seen) == Set(ids))
        await second.stop()
        try await secondRun.value
    }

    @Test func canaryAndShadowsFromTheRegistryServe() async throws {
        let deployment = try await Deployment.make()
        let layout = try RequestVectorLayout(
            config: deployment.config, featureSchema: try Features.FeatureSchema(settings: deployment.config.features))
        try await Fixtures.publish(
            [
                try Fixtures.versionRecord(1, artifact: try Fixtures.artifact(layout: layout, seed: 1), status: .champion),
                try Fixtures.versionRecord(2, artifact: try Fixtures.artifact(layout: layout, seed: 2), status: .canary),
                try Fixtures.versionRecord(3, artifact: try Fixtures.artifact(layout: layout, seed: 3), status: .shadow),
            ],
            state: RegistryState(champion: 1, canary: 2, canaryShare: 0.25, shadows: [3], history: [], revision: 4),
            topic: deployment.topics.models, producer: deployment.producer)
        let pipeline = try deployment.pipeline(group: Broker.uniqueTopic("group"))
        let running = try await deployment.start(pipeline)
        #expect(pipeline.models.revision == 4)
        let ids = (0..<2000).map { "canary-\($0)" }
        try await deployment.send(ids)
        try await Fixtures.waitUntil("every prediction") { pipeline.statistics.predictions == ids.count }
        let predictions = try await deployment.predictions().map(\.prediction)
        #expect(predictions.allSatisfy { $0.challengers.contains { $0.role == .shadow && $0.modelVersion == 3 } })
        let canary = predictions.filter { $0.role == .canary }
        #expect(canary.allSatisfy { $0.modelVersion == 2 && PredictionEngine.canaryBucket($0.requestId) < 0.25 })
        #expect(abs(Double(canary.count) / Double(ids.count) - 0.25) < 0.04)
        await pipeline.stop()
        try await running.value
    }
}

/// The bounded wait for features to reach the request time (score requests feed features in
/// elec2, so the feature-store's record of the request itself is what the scorer waits for).
@Suite struct FeatureWaitTests {
    @Test func aRequestWhoseFeaturesArriveShortlyAfterIsScoredWithThem() async throws {
        let deployment = try await Deployment.make(entities: 2)
        let pipeline = try deployment.pipeline(group: Broker.uniqueTopic("group"), featureWait: .seconds(10))
        let running = try await deployment.start(pipeline)
        let requestMs = Int64(Fixtures.t0 * 1000) + 60_000
        _ = try await deployment.send("late-features", entity: "newcomer", timeMs: requestMs)
        try await Task.sleep(for: .milliseconds(300))
        #expect(pipeline.statistics.predictions == 0, "scored before its features came")
        let schema = try Features.FeatureSchema(settings: deployment.config.features)
        let state = try Fixtures.featureState("newcomer", schema: schema, latest: Double(requestMs) / 1000)
        _ = try await deployment.producer.send(OutgoingRecord(
            topic: deployment.topics.features, key: Array("newcomer".utf8), value: state.encoded()))
        try await Fixtures.waitUntil("the prediction") { pipeline.statistics.predictions == 1 }
        let prediction = try #require(try await deployment.predictions().first?.prediction)
        #expect(prediction.requestId == "late-features")
        #expect(prediction.reasons.isEmpty)
        #expect(prediction.featureAgeSeconds == 0)
        #expect(prediction.featuresAsOfMs == requestMs)
        #expect(pipeline.statistics.featureWaitTimedOut == 0)
        await pipeline.stop()
        try await running.value
    }

    @Test func aRequestWhoseFeaturesNeverArriveIsRoutedWithItsReasonAfterTheWait() async throws {
        let deployment = try await Deployment.make(entities: 2)
        let wait = Duration.milliseconds(400)
        let pipeline = try deployment.pipeline(group: Broker.uniqueTopic("group"), featureWait: wait)
        let running = try await deployment.start(pipeline)
        _ = try await deployment.send("no-features", entity: "stranger", timeMs: Int64(Fixtures.t0 * 1000) + 60_000)
        try await Fixtures.waitUntil("the prediction") { pipeline.statistics.predictions == 1 }
        let prediction = try #require(try await deployment.predictions().first?.prediction)
        #expect(prediction.reasons == [PredictionReason.missingFeatures])
        #expect(prediction.route == .review)
        #expect(prediction.features.prefix(deployment.config.model.features.count).allSatisfy { $0.value == nil })
        #expect(prediction.latencyMs >= 400, "scored after \(prediction.latencyMs) ms, before the wait ended")
        #expect(pipeline.statistics.featureWaitTimedOut == 1)
        await pipeline.stop()
        try await running.value
    }

    /// The feature-store published the state as of the request (`fs_request_offset`) and a later
    /// state of the same entity before the scorer read the request: the request is scored with
    /// the former, so no event after it leaks into its features.
    @Test func aRequestIsScoredWithTheStateAsOfItselfNotALaterOne() async throws {
        let deployment = try await Deployment.make(entities: 2)
        let requestMs = Int64(Fixtures.t0 * 1000) + 60_000
        let report = try await deployment.send("as-of-itself", entity: "walker", timeMs: requestMs)
        let schema = try Features.FeatureSchema(settings: deployment.config.features)
        let asOfRequest = try Fixtures.featureState("walker", schema: schema, latest: Double(requestMs) / 1000)
        let later = try Fixtures.featureState("walker", schema: schema, latest: Double(requestMs) / 1000 + 3600)
        _ = try await deployment.producer.send([
            OutgoingRecord(
                topic: deployment.topics.features, key: Array("walker".utf8), value: asOfRequest.encoded(),
                headers: [KafkaHeader(key: FeatureChangelogHeader.requestOffset, string: String(report.offset))],
                partition: report.partition),
            OutgoingRecord(
                topic: deployment.topics.features, key: Array("walker".utf8), value: later.encoded(), partition: report.partition),
        ])
        let pipeline = try deployment.pipeline(group: Broker.uniqueTopic("group"), featureWait: .seconds(10))
        let running = try await deployment.start(pipeline)
        try await Fixtures.waitUntil("the prediction") { pipeline.statistics.predictions == 1 }
        let prediction = try #require(try await deployment.predictions().first?.prediction)
        #expect(prediction.requestId == "as-of-itself")
        #expect(prediction.featuresAsOfMs == requestMs)
        #expect(prediction.featureAgeSeconds == 0)
        await pipeline.stop()
        try await running.value
    }

    /// The feature-store's changelog says it has published everything up to the request's offset
    /// (`fs_input_next`), so no newer features are coming: the request is scored at once.
    @Test func theFeatureStoresInputOffsetEndsTheWaitEarly() async throws {
        let deployment = try await Deployment.make(entities: 2)
        let pipeline = try deployment.pipeline(group: Broker.uniqueTopic("group"), featureWait: .seconds(20))
        let running = try await deployment.start(pipeline)
        let report = try await deployment.send("covered", entity: "stranger", timeMs: Int64(Fixtures.t0 * 1000) + 60_000)
        try await Task.sleep(for: .milliseconds(200))
        #expect(pipeline.statistics.predictions == 0)
        let schema = try Features.FeatureSchema(settings: deployment.config.features)
        let other = try Fixtures.featureState("neighbour", schema: schema)
        _ = try await deployment.producer.send(OutgoingRecord(
            topic: deployment.topics.features, key: Array("neighbour".utf8), value: other.encoded(),
            headers: [KafkaHeader(key: "fs_batch", string: "7/0/1"), KafkaHeader(key: "fs_input_next", string: String(report.offset + 1))],
            partition: report.partition))
        try await Fixtures.waitUntil("the prediction", timeout: .seconds(10)) { pipeline.statistics.predictions == 1 }
        let prediction = try #require(try await deployment.predictions().first?.prediction)
        #expect(prediction.reasons == [PredictionReason.missingFeatures])
        #expect(prediction.latencyMs < 10_000)
        #expect(pipeline.statistics.featureWaitTimedOut == 0)
        await pipeline.stop()
        try await running.value
    }
}

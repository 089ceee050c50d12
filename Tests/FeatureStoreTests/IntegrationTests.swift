import Contracts
import Features
import Foundation
import Kafka
import Prometheus
import ServiceKit
import TestSupport
import Testing
@testable import FeatureStore

/// The data path against a real broker, in process.
@Suite("feature-store with a broker", .serialized)
struct IntegrationTests {
    /// Runs `store` until it is stopped; returns the task.
    static func start(_ store: FeatureStore) -> Task<Void, any Error> {
        Task { try await store.run() }
    }

    @Test("an empty disk rebuilds from loop.features (offsets from the changelog, new group) and continues without loss or double counting")
    func emptyDiskRebuild() async throws {
        let deployment = try await TestDeployment.make("fs-rebuild")
        let schema = try deployment.schema()
        let events = generateEvents(entities: 30, perEntity: 40, partitions: deployment.partitions)
        let half = events.count / 2
        try await deployment.produce(events[..<half])

        let firstDirectory = temporaryDirectory("fs-first")
        let first = try deployment.store(stateDirectory: firstDirectory, group: deployment.prefix + ".first")
        let firstRun = Self.start(first)
        let expectedHalf = encoded(try referenceStates(events[..<half], schema: schema))
        try await deployment.waitForChangelog(expectedHalf, timeout: .seconds(40))
        await first.stop()
        try await firstRun.value
        #expect(try storedStates(in: firstDirectory) == expectedHalf)

        let secondDirectory = temporaryDirectory("fs-second")
        let second = try deployment.store(stateDirectory: secondDirectory, group: deployment.prefix + ".second")
        let secondRun = Self.start(second)
        #expect(await waitUntil(timeout: .seconds(30)) { second.ownedPartitions.count == Int(deployment.partitions) })
        #expect(try storedStates(in: secondDirectory) == expectedHalf, "the rebuilt state equals the original")

        try await deployment.produce(events[half...])
        let expected = encoded(try referenceStates(events[...], schema: schema))
        try await deployment.waitForChangelog(expected, timeout: .seconds(40))
        #expect(try storedStates(in: secondDirectory) == expected)
        await second.stop()
        try await secondRun.value
    }

    @Test(
        "every applied score request gets the state as of itself on loop.features, tagged with its offset, no later event in it (state cache of 0, 4 and 50,000 entities)",
        arguments: [0, 4, 50_000])
    func statesAsOfScoreRequests(stateCacheEntities: Int) async throws {
        let deployment = try await TestDeployment.make("fs-request-states")
        let schema = try deployment.schema()
        let events = generateEvents(entities: 12, perEntity: 30, partitions: deployment.partitions)
        let reports = try await deployment.produce(events[...])
        var states: [String: EntityFeatureState] = [:]
        var expected: [Int32: [Int64: [UInt8]]] = [:]
        for (event, report) in zip(events, reports) where event.type != "loop.outcome.v1" {
            var state = states[event.entity] ?? EntityFeatureState(entityID: event.entity, schema: schema)
            guard case .applied = try state.apply(event.featureEvent) else { continue }
            states[event.entity] = state
            if event.type == "loop.score_request.v1" { expected[report.partition, default: [:]][report.offset] = state.encoded() }
        }
        #expect(expected.values.reduce(0) { $0 + $1.count } > 20, "the stream has score requests to check")

        let store = try deployment.store(
            stateDirectory: temporaryDirectory("fs-request-states"), group: deployment.prefix + ".fs", stateCacheEntities: stateCacheEntities)
        let run = Self.start(store)
        try await deployment.waitForChangelog(encoded(states), timeout: .seconds(40))
        await store.stop()
        try await run.value

        let partitions = (0..<deployment.partitions).map { TopicPartition(topic: deployment.config.topics.names.features, partition: $0) }
        let reader = try PartitionReader(config: deployment.kafka, partitions: partitions, logger: testLogger)
        var tagged: [Int32: [Int64: [UInt8]]] = [:]
        reading: for try await event in reader.events() {
            switch event {
            case .records(let records):
                for record in records {
                    guard let header = record.header(FeatureChangelogHeader.requestOffset)?.value,
                          let offset = Int64(String(decoding: header, as: UTF8.self)) else { continue }
                    tagged[record.partition, default: [:]][offset] = record.value
                }
            case .caughtUp: break reading
            }
        }
        await reader.close()
        #expect(tagged == expected)
    }

    @Test("two instances in one group split the partitions; when one leaves, the other takes over and nothing is lost")
    func twoInstancesAndRebalance() async throws {
        let deployment = try await TestDeployment.make("fs-group")
        let schema = try deployment.schema()
        let events = generateEvents(entities: 24, perEntity: 30, partitions: deployment.partitions, seed: 7)
        let half = events.count / 2
        let group = deployment.prefix + ".group"
        let firstDirectory = temporaryDirectory("fs-a")
        let secondDirectory = temporaryDirectory("fs-b")
        let first = try deployment.store(stateDirectory: firstDirectory, group: group)
        let second = try deployment.store(stateDirectory: secondDirectory, group: group)
        let firstRun = Self.start(first)
        let secondRun = Self.start(second)

        let split = await waitUntil(timeout: .seconds(40)) {
            let a = first.ownedPartitions, b = second.ownedPartitions
            return !a.isEmpty && !b.isEmpty && a.count + b.count == Int(deployment.partitions) && Set(a).isDisjoint(with: b)
        }
        #expect(split, "partitions split: \(first.ownedPartitions) / \(second.ownedPartitions)")

        try await deployment.produce(events[..<half])
        try await deployment.waitForChangelog(encoded(try referenceStates(events[..<half], schema: schema)), timeout: .seconds(40))

        await first.stop()
        try await firstRun.value
        #expect(await waitUntil(timeout: .seconds(40)) { second.ownedPartitions.count == Int(deployment.partitions) })
        try await deployment.produce(events[half...])
        let expected = encoded(try referenceStates(events[...], schema: schema))
        try await deployment.waitForChangelog(expected, timeout: .seconds(40))
        #expect(try storedStates(in: secondDirectory) == expected)
        await second.stop()
        try await secondRun.value
    }

    @Test("HTTP reads: current values, asOf from history, definitions, 404 and 400")
    func queries() async throws {
        let deployment = try await TestDeployment.make("fs-http")
        let schema = try deployment.schema()
        let events = generateEvents(entities: 4, perEntity: 30, partitions: deployment.partitions, seed: 3)
        try await deployment.produce(events[...])
        let store = try deployment.store(
            stateDirectory: temporaryDirectory("fs-http"), group: deployment.prefix + ".http", historyInterval: TimeSpan(seconds: 300))
        let run = Self.start(store)
        let reference = try referenceStates(events[...], schema: schema)
        try await deployment.waitForChangelog(encoded(reference), timeout: .seconds(40))

        let state = try #require(reference["entity-1"])
        let latest = try #require(state.latestEventTime)
        let current = try store.queries.current("entity-1")
        #expect(current.values == (try state.evaluate(asOf: latest)))
        #expect(current.latestEventTime == latest)

        // As of a time in the middle: the newest history snapshot at or before it, evaluated then.
        let earlier = events.filter { $0.entity == "entity-1" && $0.type != "loop.outcome.v1" }
        let cut = earlier[earlier.count / 2].millis
        let asOf = Timestamp(seconds: cut / 1000, nanoseconds: Int32(cut % 1000) * 1_000_000)
        let past = try store.queries.values(of: "entity-1", asOf: asOf)
        #expect(past.latestEventTime.map { $0 <= Double(cut) / 1000 } == true)
        #expect(past.values != current.values)

        let router = AdminRoutes.makeRouter(readiness: Readiness(), metrics: .init())
        store.queries.addRoutes(to: router)
        let server = AdminServer(router: router, host: "127.0.0.1", port: 0, threading: FeatureStoreService.httpThreading, logger: testLogger)
        let serverTask = Task { try await server.run() }
        let port = try #require(await server.boundPort())
        let ok = try await HTTPGet.fetch(port: port, path: "/v1/features/entity-1")
        #expect(ok.status == 200)
        #expect(ok.body.contains("\"entity\":\"entity-1\""))
        #expect(ok.body.contains("\"nswprice_last\""))
        let timed = try await HTTPGet.fetch(port: port, path: "/v1/features/entity-1?asOf=\(asOf.text)")
        #expect(timed.status == 200)
        let missing = try await HTTPGet.fetch(port: port, path: "/v1/features/nobody")
        #expect(missing.status == 404)
        #expect(missing.body.contains("nobody"))
        let bad = try await HTTPGet.fetch(port: port, path: "/v1/features/entity-1?asOf=yesterday")
        #expect(bad.status == 400)
        #expect(bad.body.contains("asOf"))
        let definitions = try await HTTPGet.fetch(port: port, path: "/v1/feature-definitions")
        #expect(definitions.status == 200)
        #expect(definitions.body.contains("\"nswprice_mean_24h\""))
        serverTask.cancel()

        await store.stop()
        try await run.value
    }

    @Test("asOf reads: exactly the events before the start of the time's history interval, and those of its interval when none is after it")
    func pointInTimeGuarantee() async throws {
        let deployment = try await TestDeployment.make("fs-asof")
        let schema = try deployment.schema()
        let interval: Int64 = 600_000
        let start: Int64 = 1_704_067_200_000
        // One entity, in event-time order, every 150 s plus a few seconds of jitter: several
        // events per interval, across several batches of 7.
        var random = SplitMix(seed: 11)
        let events = (0..<40).map { index in
            GeneratedEvent(
                id: "asof-\(index)", entity: "entity-asof", partition: 1, type: "loop.observation.v1",
                millis: start + Int64(index) * 150_000 + Int64(random.next() % 5_000),
                values: ["nswprice": Double(random.next() % 1000) / 1000, "nswdemand": 0.5, "vicprice": 0.25, "transfer": 0.75])
        }
        try await deployment.produce(events[...])
        let store = try deployment.store(
            stateDirectory: temporaryDirectory("fs-asof"), group: deployment.prefix + ".asof", batchSize: 7,
            historyInterval: TimeSpan(seconds: Double(interval) / 1000))
        let run = Self.start(store)
        try await deployment.waitForChangelog(encoded(try referenceStates(events[...], schema: schema)), timeout: .seconds(40))

        func expected(at millis: Int64) throws -> [Double?]? {
            let slot = floorDivide(millis, interval)
            let inSlot = events.filter { floorDivide($0.millis, interval) == slot }
            let cutoff = inSlot.allSatisfy { $0.millis <= millis } ? millis + 1 : slot * interval
            let included = events.filter { $0.millis < cutoff }
            guard !included.isEmpty else { return nil }
            let state = try #require(try referenceStates(included[...], schema: schema)["entity-asof"])
            return try state.evaluate(asOf: Double(millis) / 1000)
        }
        var checked = 0
        for event in events {
            for millis in [event.millis - 1_000, event.millis, event.millis + 1_000, event.millis + 70_000] {
                let time = Timestamp(seconds: millis / 1000, nanoseconds: Int32(millis % 1000) * 1_000_000)
                if let values = try expected(at: millis) {
                    #expect(try store.queries.values(of: "entity-asof", asOf: time).values == values, "asOf \(time)")
                    checked += 1
                } else {
                    #expect(throws: (any Error).self) { try store.queries.values(of: "entity-asof", asOf: time) }
                }
            }
        }
        #expect(checked > 100)
        await store.stop()
        try await run.value
    }
}

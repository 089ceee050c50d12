#if canImport(Glibc)
import Glibc
#endif
import Contracts
import Features
import Foundation
import Kafka
import Learning
import Scorer
import ServiceKit
import Testing
import TestSupport

/// The built `scorer` executable as a child process: kill -9 mid-stream, and `POST /v1/score`.
@Suite("scorer process", .serialized)
struct ProcessTests {
    /// A running `scorer` and its admin port.
    struct Launched {
        let child: ChildProcess
        let port: Int

        /// The value of an unlabeled metric from `/metrics`.
        func metric(_ name: String) async -> Double? {
            guard let reply = try? await HTTPGet.fetch(port: port, path: "/metrics") else { return nil }
            for line in reply.body.split(separator: "\n") where line.hasPrefix(name + " ") {
                return Double(line.split(separator: " ")[1])
            }
            return nil
        }
    }

    /// Writes the deployment's loop.yaml to a temporary file.
    static func writeConfig(prefix: String) throws -> String {
        let path = Fixtures.packageRoot.appendingPathComponent("examples/elec2/loop.yaml").path
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: "prefix: loop ", with: "prefix: \(prefix) ")
        text = text.replacingOccurrences(of: "partitions: 4 ", with: "partitions: \(Deployment.partitions) ")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("scorer-\(UUID()).yaml").path
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    static func launch(
        config: String, brokers: String, group: String, arguments: [String] = [], apiKeys: String? = nil
    ) throws -> Launched {
        let port = try Broker.freePort()
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("scorer-\(UUID())")
        let child = try ChildProcess.launch(
            "scorer",
            arguments: [
                "--config", config, "--brokers", brokers, "--group", group, "--admin-port", String(port),
                "--admin-host", "127.0.0.1", "--state-dir", scratch.appendingPathComponent("state").path,
            ] + arguments,
            environment: apiKeys.map { ["LOOP_API_KEYS": $0] } ?? [:], logDirectory: scratch)
        return Launched(child: child, port: port)
    }

    static func ready(_ launched: Launched) async throws {
        try await launched.child.waitUntilReady(port: launched.port, timeout: .seconds(40))
    }

    @Test("kill -9 of the scorer executable mid-stream, then restart: every requestId exactly once in loop.predictions")
    func killMidStreamAndRestart() async throws {
        let deployment = try await Deployment.make()
        let config = try Self.writeConfig(prefix: deployment.config.topics.prefix)
        let brokers = deployment.kafka.brokers
        let group = Broker.uniqueTopic("scorer-process")
        let ids = (0..<6000).map { "kill-\($0)" }
        try await deployment.send(Array(ids[..<4000]))
        // Tiny batches one at a time and a short feature wait (no feature-store runs), so the 4,000
        // requests take seconds and the kill lands mid-stream even on a loaded machine.
        let arguments = ["--scorer-batch", "10", "--scorer-in-flight", "1", "--scorer-feature-wait-ms", "20"]

        let first = try Self.launch(config: config, brokers: brokers, group: group, arguments: arguments)
        defer { first.child.kill() }
        try await Self.ready(first)
        try await Fixtures.waitUntil("some predictions", timeout: .seconds(40)) { (await first.metric("scorer_requests_total") ?? 0) >= 500 }
        first.child.kill()
        #expect(await first.child.waitForExit(timeout: .seconds(20)))
        #expect(first.child.termination == .signalled(SIGKILL))
        let answeredBeforeKill = try await deployment.predictions().count
        #expect(answeredBeforeKill > 0 && answeredBeforeKill < 4000, "the kill came mid-stream (\(answeredBeforeKill) answered)")

        try await deployment.send(Array(ids[4000...]), offsetMs: 90_000)
        let second = try Self.launch(config: config, brokers: brokers, group: group, arguments: arguments)
        defer { second.child.kill() }
        try await Self.ready(second)
        try await Fixtures.waitUntil("every prediction", timeout: .seconds(60)) { try await deployment.predictions().count >= ids.count }
        // Let the second instance finish whatever it re-read; nothing more may appear.
        try await Fixtures.waitUntil("the consumer caught up", timeout: .seconds(30)) {
            try await Self.lag(deployment: deployment, group: group, kafka: deployment.kafka) == 0
        }
        let predictions = try await deployment.predictions().map(\.prediction.requestId)
        #expect(predictions.count == ids.count, "\(predictions.count - Set(predictions).count) duplicated")
        #expect(Set(predictions) == Set(ids))

        #expect(await second.child.stop(grace: .seconds(20)) == .exited(0), "\(second.child.logTail())")
    }

    /// The group's lag on loop.events: committed offsets against the ends.
    static func lag(deployment: Deployment, group: String, kafka: KafkaConfig) async throws -> Int64 {
        let admin = try KafkaAdmin(config: kafka, logger: Fixtures.logger)
        return try await admin.lag(group: group, topic: deployment.topics.events).partitions.reduce(0) { $0 + $1.lag }
    }

    @Test("POST /v1/score: 401 without a key, 403 for a viewer; a producer gets the stream's prediction, logged to loop.predictions")
    func synchronousScoring() async throws {
        let deployment = try await Deployment.make(entities: 4)
        let layout = try RequestVectorLayout(
            config: deployment.config, featureSchema: try Features.FeatureSchema(settings: deployment.config.features))
        let artifact = try Fixtures.artifact(layout: layout, seed: 21)
        try await Fixtures.publish(
            [try Fixtures.versionRecord(3, artifact: artifact, status: .champion)],
            state: RegistryState(champion: 3, canary: nil, canaryShare: 0, shadows: [], history: [], revision: 1),
            topic: deployment.topics.models, producer: deployment.producer)
        let config = try Self.writeConfig(prefix: deployment.config.topics.prefix)
        let producerKey = APIKeys.generate(name: "caller", roles: [.producer])
        let viewerKey = APIKeys.generate(name: "looker", roles: [.viewer])
        let launched = try Self.launch(
            config: config, brokers: deployment.kafka.brokers, group: Broker.uniqueTopic("scorer-http"),
            apiKeys: producerKey.hashLine + ";" + viewerKey.hashLine)
        defer { launched.child.kill() }
        try await Self.ready(launched)

        let requestMs = Int64(Fixtures.t0 * 1000) + 60_000
        let event = CloudEvent(
            id: "http-1", source: "tests", type: "loop.score_request.v1", subject: "entity-1",
            time: Timestamp(seconds: requestMs / 1000, nanoseconds: 0), dataContentType: "application/json",
            data: .json(.object(Fixtures.context(requestId: "inline-1", nswprice: 0.8))))
        let body = String(decoding: JSONFormat.encode(event), as: UTF8.self)
        let json = ["Content-Type": "application/cloudevents+json"]
        #expect(try await HTTPGet.request(port: launched.port, method: "POST", path: "/v1/score", headers: json, body: body).status == 401)
        let asViewer = json.merging(["Authorization": "Bearer \(viewerKey.key)"]) { $1 }
        #expect(try await HTTPGet.request(port: launched.port, method: "POST", path: "/v1/score", headers: asViewer, body: body).status == 403)
        let asProducer = json.merging(["Authorization": "Bearer \(producerKey.key)"]) { $1 }
        let reply = try await HTTPGet.request(port: launched.port, method: "POST", path: "/v1/score", headers: asProducer, body: body)
        #expect(reply.status == 200, "\(reply.body)")
        let answered = try Prediction(bytes: Array(reply.body.utf8))

        // The same features and model as the stream: the engine on the same state and artifact.
        let schema = try Features.FeatureSchema(settings: deployment.config.features)
        let models = ServingModels(
            revision: 1, champion: try ServingModel(version: 3, artifact: artifact, layout: layout), canary: nil, canaryShare: 0, shadows: [])
        let expected = PredictionEngine(layout: layout, policy: deployment.config.decision).predict(
            ScoreRequest(requestId: "inline-1", entity: "entity-1", eventTimeMs: requestMs, context: Fixtures.context(requestId: "inline-1", nswprice: 0.8)),
            state: try Fixtures.featureState("entity-1", schema: schema), models: models)
        #expect(answered.requestId == "inline-1")
        #expect(answered.modelVersion == 3 && answered.role == .champion)
        #expect(answered.features == expected.features)
        #expect(answered.score == expected.score)
        #expect(answered.route == expected.route && answered.decision == expected.decision)

        let logged = try await deployment.predictions().map(\.prediction)
        #expect(logged.count == 1)
        #expect(logged.first?.requestId == "inline-1")
        #expect(logged.first?.score == answered.score)

        // The requestId is answered once.
        #expect(try await HTTPGet.request(port: launched.port, method: "POST", path: "/v1/score", headers: asProducer, body: body).status == 409)
        #expect(try await deployment.predictions().count == 1)
        #expect(await launched.child.stop() == .exited(0), "\(launched.child.logTail())")
    }
}

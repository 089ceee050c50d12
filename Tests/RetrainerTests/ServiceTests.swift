import Contracts
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Kafka
import Logging
import ServiceKit
import Testing
import TestSupport
@testable import Retrainer

@Suite("Retrainer service")
struct RetrainerServiceTests {
    @Test("consumes loop.labeled through its consumer group, retrains every N labels, serves and changes the registry over HTTP")
    func endToEnd() async throws {
        let broker = try await Broker.shared()
        let prefix = Broker.uniqueTopic("rt-service")
        let config = try Fixture.config(prefix: prefix, retraining: "everyLabels: 300\nholdoutShare: 0.25\ngate: { minHoldout: 50 }")
        let operatorKey = APIKeys.generate(name: "ops", roles: [.operator, .viewer])
        let common = CommonSettings(service: RetrainerService.name, defaultAdminPort: 0)
        guard case .run(let settings) = try Settings.parse(
            common.all + RetrainerService.settings,
            arguments: ["--brokers", broker.bootstrap, "--state-dir", try Fixture.temporaryDirectory(), "--admin-port", "0"],
            environment: [:])
        else { Issue.record("settings did not parse"); return }
        let environment = ServiceEnvironment(
            name: RetrainerService.name, settings: settings, common: common, config: config, logger: Fixture.logger,
            apiKeys: try APIKeys(parsing: operatorKey.hashLine, origin: "test"))
        let service = try await RetrainerService(environment: environment)
        let admin = AdminServer(router: environment.router, host: "127.0.0.1", port: 0, logger: Fixture.logger)
        let running = Task {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await admin.run() }
                group.addTask { try await service.run() }
            }
        }
        defer { running.cancel() }
        let port = try #require(await admin.boundPort())

        let producer = try KafkaProducer(config: KafkaConfig(brokers: broker.bootstrap), logger: Fixture.logger)
        let examples = Fixture.examples(count: 320)
        _ = try await producer.send((examples + examples.prefix(20)).map {
            OutgoingRecord(topic: config.topics.names.labeled, key: Array($0.entity.utf8), value: $0.bytes)
        })

        func call(_ method: String, _ path: String, key: String? = operatorKey.key, body: String? = nil) async throws -> (Int, JSONValue) {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
            request.httpMethod = method
            if let key { request.setValue(key, forHTTPHeaderField: "X-API-Key") }
            request.httpBody = body.map { Data($0.utf8) }
            let (data, response) = try await URLSession.shared.data(for: request)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, (try? JSONValue.parse(Array(data))) ?? .null)
        }
        func waitForModels(_ count: Int) async throws -> JSONValue {
            let deadline = ContinuousClock.now + .seconds(40)
            while ContinuousClock.now < deadline {
                let (status, body) = try await call("GET", "/v1/models")
                if status == 200, (body["versions"]?.arrayValue?.count ?? 0) >= count { return body }
                try await Task.sleep(for: .milliseconds(200))
            }
            Issue.record("no \(count) model versions within the deadline")
            return .null
        }

        let first = try await waitForModels(1)
        #expect(first["registry"]?["champion"]?.int64Value == 1)
        #expect(first["versions"]?.arrayValue?.first?["trigger"]?.stringValue == "every_labels")

        let (unauthorized, _) = try await call("POST", "/v1/retrain", key: nil)
        #expect(unauthorized == 401)
        let (accepted, retrain) = try await call("POST", "/v1/retrain", body: #"{"reason": "new labels reviewed"}"#)
        #expect(accepted == 202)
        #expect(retrain["trigger"]?["actor"]?.stringValue == "ops")
        let second = try await waitForModels(2)
        let manual = second["versions"]?.arrayValue?.last
        #expect(manual?["trigger"]?.stringValue == "manual")

        let (detailStatus, detail) = try await call("GET", "/v1/models/2")
        #expect(detailStatus == 200)
        #expect(detail["card"]?.stringValue?.contains("new labels reviewed") == true)
        #expect(detail["lineage"]?["examples"]?["total"]?.int64Value == 320)
        #expect(try await call("GET", "/v1/models/9").0 == 404)

        if manual?["status"]?.stringValue != "champion" {
            let (promoteStatus, promoted) = try await call("POST", "/v1/models/2/promote", body: #"{"reason": "operator override"}"#)
            #expect(promoteStatus == 200 && promoted["registry"]?["champion"]?.int64Value == 2)
        }
        let (rollbackStatus, rolledBack) = try await call("POST", "/v1/rollback", body: #"{"reason": "testing rollback"}"#)
        #expect(rollbackStatus == 200)
        #expect(rolledBack["registry"]?["champion"]?.int64Value == 1)
        #expect(try await call("POST", "/v1/rollback").0 == 409)
    }
}

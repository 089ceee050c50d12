import ArgumentParser
import Contracts
import Foundation
import Hummingbird
import Kafka
import Logging
import Loopctl
import Prometheus
import ServiceKit
import ServiceLifecycle
import Synchronization
import Testing

@Suite("HTTP requests and output")
struct HTTPCommandTests {
    let base = URL(string: "http://127.0.0.1:8085")!

    @Test("retrainer requests: methods, paths, operator key and reason bodies")
    func retrainerRequests() throws {
        let api = RetrainerAPI(baseURL: base, apiKey: "op-key")
        let list = api.listModels()
        #expect(list.method == "GET")
        #expect(list.url.absoluteString == "http://127.0.0.1:8085/v1/models")
        #expect(list.headers["Authorization"] == "Bearer op-key")
        #expect(list.body == nil)
        #expect(api.showModel(4).url.path == "/v1/models/4")
        let promote = api.promote(4, reason: "better on holdout")
        #expect(promote.method == "POST")
        #expect(promote.url.path == "/v1/models/4/promote")
        #expect(promote.headers["Content-Type"] == "application/json")
        #expect(promote.body == Array(#"{"reason":"better on holdout"}"#.utf8))
        #expect(api.rollback(reason: nil).url.path == "/v1/rollback")
        #expect(api.rollback(reason: nil).body == Array("{}".utf8))
        #expect(api.retrain(reason: "drift").url.path == "/v1/retrain")
        #expect(RetrainerAPI(baseURL: base, apiKey: nil).listModels().headers["Authorization"] == nil)
    }

    @Test("models list reads the retrainer's GET /v1/models answer: {registry, versions: [{version, status, holdout, ...}]}")
    func modelsListOfRetrainerAnswer() {
        let version: JSONValue = [
            "version": 3, "status": "champion", "parent": 1, "trigger": "every_labels", "createdAtMs": 0,
            "reasons": ["holdout has 160 examples"], "holdout": ["candidate": ["auc": 0.9815], "champion": .null],
            "featureSchemaHash": "d0cbbcd66ba072b6",
        ]
        let answer: JSONValue = ["registry": RegistryState(
            champion: 3, canary: nil, canaryShare: 0, shadows: [], history: [1], revision: 2).json, "versions": [version]]
        let models = RetrainerAPI.models(in: answer)
        #expect(models.map(\.version) == [3])
        #expect(models.first?.holdoutAUC == 0.9815)
        let lines = RetrainerAPI.listText(answer).split(separator: "\n")
        #expect(lines.count == 2 && lines[1].hasPrefix("*3") && lines[1].contains("0.982"), "\(lines)")
    }

    @Test("models list reads model version records, stars the champion and shows the holdout AUC")
    func modelsListText() {
        let versions = [
            ModelVersionRecord(
                version: 2, status: .champion, parent: 1, trigger: "event_time", createdAtMs: 86_400_000,
                reasons: ["auc 0.87 > 0.85"], lineage: ["holdout": ["candidate": ["auc": 0.871]]], artifact: [:], card: "# v2"),
            ModelVersionRecord(
                version: 1, status: .retired, parent: nil, trigger: "manual", createdAtMs: 0, reasons: [],
                lineage: [:], artifact: [:], card: ""),
        ]
        let answer: JSONValue = ["models": .array(versions.map(\.json)), "registry": RegistryState(
            champion: 2, canary: nil, canaryShare: 0, shadows: [], history: [1], revision: 2).json]
        let text = RetrainerAPI.listText(answer)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix("VERSION"))
        #expect(lines[1].hasPrefix(" 1") && lines[1].contains("retired") && lines[1].contains("manual"))
        #expect(lines[2].hasPrefix("*2") && lines[2].contains("champion") && lines[2].contains("0.871"))
        #expect(lines[2].contains("1970-01-02T00:00:00Z"))
        #expect(RetrainerAPI.listText(.array([])).contains("no model versions"))
        #expect(RetrainerAPI.showText(versions[0].json) == "# v2", "show prints the model card")
        #expect(RetrainerAPI.actionText(["message": "version 2 promoted"], fallback: "x") == "version 2 promoted")
    }

    @Test("ingest batch request: batch media type, bearer key, the events as a CloudEvents batch")
    func ingestBatchRequest() throws {
        let sink = HTTPEventSink(ingestURL: URL(string: "http://ingest:8081")!, apiKey: "producer-key")
        let events = Array(try ReplayPlan(table: try CSVTable.parse(sampleCSV), mapping: sampleMapping).events())
        let request = sink.request(for: events)
        #expect(request.method == "POST")
        #expect(request.url.absoluteString == "http://ingest:8081/v1/events")
        #expect(request.headers["Content-Type"] == "application/cloudevents-batch+json")
        #expect(request.headers["Authorization"] == "Bearer producer-key")
        let decoded = try JSONFormat.decodeBatch(try #require(request.body)).map { try $0.get() }
        #expect(decoded == events)
    }

    @Test("connection options: flags win over env vars, which win over defaults")
    func connectionResolution() throws {
        var options = try ConnectionOptions.parse(["--brokers", "flag:9092", "--scorer-url", "http://s:1"])
        let resolved = try options.resolve(environment: [
            "LOOP_BROKERS": "env:9092", "LOOP_TOPIC_PREFIX": "demo", "LOOP_RETRAINER_URL": "http://r:2", "LOOP_API_KEY": "k",
        ])
        #expect(resolved.kafka.brokers == "flag:9092")
        #expect(resolved.topics.rawEvents == "demo.events.raw")
        #expect(resolved.url(.scorer).absoluteString == "http://s:1")
        #expect(resolved.url(.retrainer).absoluteString == "http://r:2")
        #expect(resolved.url(.ingest).absoluteString == "http://127.0.0.1:8081")
        #expect(resolved.apiKey == "k")
        options = try ConnectionOptions.parse(["--ingest-url", "ftp://x"])
        let error = try #require(throws: LoopctlError.self) { try options.resolve(environment: [:]) }
        #expect(error.reason.contains("ingest URL `ftp://x`"))
    }

    // MARK: - Against ServiceKit's admin server

    @Test("against a stand-in admin server: status probes, replay over HTTP, a retrainer error names the status")
    func liveStandIn() async throws {
        let readiness = Readiness()
        readiness.require("kafka.assigned")
        let router = AdminRoutes.makeRouter(readiness: readiness, metrics: PrometheusCollectorRegistry())
        let received = Mutex<[(String?, [CloudEvent])]>([])
        router.post("v1/events") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 10_000_000)
            let events = try JSONFormat.decodeBatch(Array(buffer: body)).map { try $0.get() }
            received.withLock { $0.append((request.headers[.contentType], events)) }
            return Response(status: .accepted)
        }
        router.get("v1/models") { _, _ -> Response in
            throw ServiceError(.forbidden, "the key's role viewer may not do this", status: .forbidden)
        }
        let server = AdminServer(router: router, host: "127.0.0.1", port: 0, logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        let group = ServiceGroup(services: [server], logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let port = try #require(await server.boundPort())
            let url = URL(string: "http://127.0.0.1:\(port)")!
            // Generous: the in-process server can take seconds to answer on a loaded 2-core CI machine.
            let client = HTTPClient(timeout: .seconds(30))

            let notReady = await StatusCommand.probe(.ingest, url: url, client: client)
            #expect(notReady.health == "alive")
            #expect(notReady.readiness == "waiting for kafka.assigned")
            readiness.satisfy("kafka.assigned")
            let ready = await StatusCommand.probe(.ingest, url: url, client: client)
            #expect(ready.isUp)
            let down = await StatusCommand.probe(.scorer, url: URL(string: "http://127.0.0.1:1")!, client: client)
            #expect(down.health == "down" && !down.isUp)
            let table = StatusCommand.text(health: [ready, down], lags: []).split(separator: "\n").map { $0.split(separator: " ") }
            #expect(table[1].prefix(3) == ["ingest", "alive", "ready"])
            #expect(table[2].prefix(2) == ["scorer", "down"])

            let plan = try ReplayPlan(table: try CSVTable.parse(sampleCSV), mapping: sampleMapping)
            let sink = HTTPEventSink(ingestURL: url, apiKey: "k", batchSize: 5, client: client)
            let summary = try await ReplayRunner(progress: ProgressDisplay(style: .silent) { _ in }).run(plan, to: sink)
            #expect(summary.events == plan.eventCount)
            let batches = received.withLock { $0 }
            #expect(batches.count == 3)
            #expect(batches.allSatisfy { $0.0 == "application/cloudevents-batch+json" })
            #expect(batches.flatMap(\.1) == Array(plan.events()))

            let api = RetrainerAPI(baseURL: url, apiKey: "viewer-key")
            let error = try await #require(throws: LoopctlError.self) { try await api.call(api.listModels(), client: client) }
            #expect(error.reason == "retrainer answered 403 to GET /v1/models: the key's role viewer may not do this (set LOOP_API_KEY to an operator key)")
            #expect(!error.isRetryable)

            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}

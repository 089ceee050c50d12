import Foundation
import Hummingbird
import Logging
import NIOPosix
import Prometheus
import ServiceKit
import ServiceLifecycle
import TestSupport
import Testing

/// Runs `server` in a service group for the duration of `body`, then shuts it down gracefully.
func withRunningServer<Result>(
    _ server: AdminServer, _ body: (Int) async throws -> Result
) async throws -> Result {
    let group = ServiceGroup(services: [server], logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let port = try #require(await server.boundPort())
        do {
            let result = try await body(port)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return result
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
    }
}

@Suite("Admin server")
struct AdminServerTests {
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    @Test("/healthz is 200, /readyz 503 until ready then 200, /metrics shows registered metrics")
    func adminEndpoints() async throws {
        let readiness = Readiness()
        let metrics = PrometheusCollectorRegistry()
        let events = metrics.makeCounter(
            descriptor: MetricNameDescriptor(namespace: "loop", subsystem: "ingest", metricName: "events",
                                             unitName: "total", helpText: "Events accepted."))
        readiness.require("kafka.assigned")
        readiness.require("state.restored")
        let router = AdminRoutes.makeRouter(readiness: readiness, metrics: metrics)
        let server = AdminServer(router: router, host: "127.0.0.1", port: 0, logger: logger)

        try await withRunningServer(server) { port in
            #expect(port > 0)
            let health = try await HTTPGet.fetch(port: port, path: "/healthz")
            #expect(health.status == 200)
            #expect(health.body == #"{"status":"alive","version":"\#(LoopVersion.current)"}"#)

            let notReady = try await HTTPGet.fetch(port: port, path: "/readyz")
            #expect(notReady.status == 503)
            #expect(notReady.headers["content-type"]?.hasPrefix("application/json") == true)
            let body = try #require(try JSONSerialization.jsonObject(with: Data(notReady.body.utf8)) as? [String: String])
            #expect(body["error"] == "not_ready")
            #expect(body["message"] == "waiting for kafka.assigned, state.restored")

            readiness.satisfy("kafka.assigned")
            #expect(try await HTTPGet.fetch(port: port, path: "/readyz").status == 503)
            readiness.satisfy("state.restored")
            let ready = try await HTTPGet.fetch(port: port, path: "/readyz")
            #expect(ready.status == 200)
            #expect(ready.body == #"{"status":"ready"}"#)

            events.increment(by: Int64(3))
            let scrape = try await HTTPGet.fetch(port: port, path: "/metrics")
            #expect(scrape.status == 200)
            #expect(scrape.headers["content-type"] == AdminRoutes.metricsContentType)
            #expect(scrape.body.contains("# TYPE loop_ingest_events_total counter"))
            #expect(scrape.body.contains("# HELP loop_ingest_events_total Events accepted."))
            #expect(scrape.body.contains("loop_ingest_events_total 3"))

            let missing = try await HTTPGet.fetch(port: port, path: "/nope")
            #expect(missing.status == 404)
            #expect(missing.body == #"{"error":"not_found","message":"Not Found"}"#)
        }
    }

    @Test("service routes on the same router; errors map to statuses with a JSON body")
    func serviceRoutes() async throws {
        struct Boom: Error {}
        let router = AdminRoutes.makeRouter(readiness: Readiness(), metrics: PrometheusCollectorRegistry())
        router.get("v1/features/:entity") { _, context -> String in
            let entity = try context.parameters.require("entity")
            guard entity == "NSW" else { throw ServiceError(ServiceError.Code("unknown_entity"), "no features for \(entity)", status: .notFound) }
            return "features of \(entity)"
        }
        router.get("v1/boom") { _, _ -> String in throw Boom() }
        let server = AdminServer(router: router, host: "127.0.0.1", port: 0, logger: logger)

        try await withRunningServer(server) { port in
            let found = try await HTTPGet.fetch(port: port, path: "/v1/features/NSW")
            #expect(found.status == 200)
            #expect(found.body == "features of NSW")

            let unknown = try await HTTPGet.fetch(port: port, path: "/v1/features/VIC")
            #expect(unknown.status == 404)
            #expect(unknown.body == #"{"error":"unknown_entity","message":"no features for VIC"}"#)

            let boom = try await HTTPGet.fetch(port: port, path: "/v1/boom")
            #expect(boom.status == 500)
            #expect(boom.body == #"{"error":"internal","message":"internal error"}"#)
        }
    }

    @Test("API keys: 401 without a valid key, 403 without the role, 200 with it; failures counted and audited")
    func authentication() async throws {
        let readiness = Readiness()
        let metrics = PrometheusCollectorRegistry()
        let operatorKey = APIKeys.generate(name: "ops", roles: [.operator])
        let viewerKey = APIKeys.generate(name: "dashboard", roles: [.viewer])
        let keys = try APIKeys(parsing: operatorKey.hashLine + "\n" + viewerKey.hashLine, origin: "test")
        let audited = Recorder()
        let router = AdminRoutes.makeRouter(readiness: readiness, metrics: metrics)
        router.group("v1/models")
            .add(middleware: RequireRole(.operator, keys: keys, metrics: metrics) { failure in
                audited.record("\(failure.reason.rawValue) \(failure.keyName ?? "-") \(failure.requiredRole.rawValue) \(failure.path)")
            })
            .get("promote") { _, context -> String in
                "promoted by \(context.identity?.name ?? "nobody")"
            }
        let server = AdminServer(router: router, host: "127.0.0.1", port: 0, logger: logger)

        try await withRunningServer(server) { port in
            let anonymous = try await HTTPGet.fetch(port: port, path: "/v1/models/promote")
            #expect(anonymous.status == 401)
            #expect(anonymous.body.contains(#""error":"unauthorized""#))

            let wrongKey = try await HTTPGet.fetch(
                port: port, path: "/v1/models/promote", headers: ["Authorization": "Bearer loop_not-a-real-key"])
            #expect(wrongKey.status == 401)

            let viewer = try await HTTPGet.fetch(
                port: port, path: "/v1/models/promote", headers: ["X-API-Key": viewerKey.key])
            #expect(viewer.status == 403)
            #expect(viewer.body.contains(#""error":"forbidden""#))
            #expect(viewer.body.contains("lacks the role operator"))

            let bearer = try await HTTPGet.fetch(
                port: port, path: "/v1/models/promote", headers: ["Authorization": "Bearer \(operatorKey.key)"])
            #expect(bearer.status == 200)
            #expect(bearer.body == "promoted by ops")

            let header = try await HTTPGet.fetch(
                port: port, path: "/v1/models/promote", headers: ["X-API-Key": operatorKey.key])
            #expect(header.status == 200)

            #expect(try await HTTPGet.fetch(port: port, path: "/healthz").status == 200)

            let scrape = try await HTTPGet.fetch(port: port, path: "/metrics").body
            #expect(scrape.contains(#"loop_auth_failures_total{reason="missing_key"} 1"#))
            #expect(scrape.contains(#"loop_auth_failures_total{reason="unknown_key"} 1"#))
            #expect(scrape.contains(#"loop_auth_failures_total{reason="missing_role"} 1"#))
        }
        #expect(audited.all == [
            "missing_key - operator /v1/models/promote",
            "unknown_key - operator /v1/models/promote",
            "missing_role dashboard operator /v1/models/promote",
        ])
    }

    @Test("handlers run on the server's event loop with .eventLoop threading, off it by default; both serve concurrent requests")
    func threading() async throws {
        for threading in [AdminServer.Threading.eventLoop, .cooperativePool] {
            let router = AdminRoutes.makeRouter(readiness: Readiness(), metrics: PrometheusCollectorRegistry())
            router.get("where/:n") { _, context in
                let n = try context.parameters.require("n")
                return n + (MultiThreadedEventLoopGroup.currentEventLoop == nil ? " pool" : " loop")
            }
            let server = AdminServer(router: router, host: "127.0.0.1", port: 0, threading: threading, logger: logger)
            let bodies = try await withRunningServer(server) { port in
                try await withThrowingTaskGroup(of: String.self) { requests in
                    for n in 0..<20 {
                        requests.addTask {
                            let reply = try await HTTPGet.fetch(port: port, path: "/where/\(n)")
                            #expect(reply.status == 200)
                            return reply.body
                        }
                    }
                    return try await requests.reduce(into: Set<String>()) { $0.insert($1) }
                }
            }
            let place = threading == .eventLoop ? "loop" : "pool"
            #expect(bodies == Set((0..<20).map { "\($0) \(place)" }))
        }
    }
}

@Suite("Readiness")
struct ReadinessTests {
    @Test("ready only with every registered condition met and before shutdown")
    func conditions() {
        let readiness = Readiness()
        #expect(!readiness.isReady)
        #expect(readiness.reasonNotReady == "no readiness conditions registered yet")
        readiness.require("kafka.assigned")
        #expect(!readiness.isReady)
        readiness.satisfy("kafka.assigned")
        #expect(readiness.isReady)
        #expect(readiness.reasonNotReady == nil)
        readiness.unsatisfy("kafka.assigned")
        #expect(readiness.reasonNotReady == "waiting for kafka.assigned")
        readiness.satisfy("kafka.assigned")
        readiness.beginShutdown()
        #expect(!readiness.isReady)
        #expect(readiness.reasonNotReady == "shutting down")
    }
}

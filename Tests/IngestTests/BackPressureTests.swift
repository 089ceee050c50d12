import Contracts
import Foundation
import Ingest
import Kafka
import Logging
import ServiceKit
import Testing
import TestSupport

@Suite("ingest: back-pressure on HTTP with a broker that stops")
struct BackPressureTests {
    @Test("503 with Retry-After over max-pending while the broker is stopped, and when the delivery times out")
    func brokerStopped() async throws {
        let broker = try await Broker.start()
        defer { broker.stop() }
        let deployment = try await Deployment(broker: broker)
        let key = APIKeys.generate(name: "writer", roles: [.producer])
        let service = try await RunningService.start(
            try deployment.environment(
                logger: Logger(label: "ingest-backpressure"), arguments: ["--max-pending", "1", "--delivery-timeout", "3"],
                apiKeys: try APIKeys(parsing: key.hashLine, origin: "test")),
            http: true)
        let port = try await service.port
        let headers = ["Authorization": "Bearer \(key.key)", "Content-Type": "application/cloudevents+json"]
        func event(_ id: String) throws -> [UInt8] {
            JSONFormat.encode(CloudEvent(
                id: id, source: "/backpressure", type: "loop.observation.v1", subject: "NSW",
                time: try Timestamp(rfc3339: "2024-05-01T10:00:00Z"), data: .json(.object(observationData()))))
        }

        let before = try await HTTPPost.send(port: port, headers: headers, body: try event("b-1"))
        #expect(before.status == 202)

        broker.stop()
        let stuck = Task { try await HTTPPost.send(port: port, headers: headers, body: try event("b-2")) }
        let deadline = ContinuousClock.now + .seconds(5)
        while service.metric("loop_ingest_queue_depth_events") < 1 {
            guard ContinuousClock.now < deadline else { throw TestFailure("the second event never became pending") }
            try await Task.sleep(for: .milliseconds(10))
        }
        let refused = try await HTTPPost.send(port: port, headers: headers, body: try event("b-3"))
        #expect(refused.status == 503)
        #expect(refused.headers["retry-after"] == "1")
        #expect(refused.body.contains("back-pressured"))

        let timedOut = try await stuck.value
        #expect(timedOut.status == 503)
        #expect(timedOut.headers["retry-after"] == "1")
        #expect(service.metric("loop_ingest_queue_depth_events") == 0)
        await service.abandon()
    }
}

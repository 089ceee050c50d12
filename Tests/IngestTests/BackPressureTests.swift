#if canImport(Glibc)
import Glibc
#endif
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
    @Test("every metric the issue names exists; 503 with Retry-After over max-pending while the broker is stopped, and when the delivery times out")
    func brokerStopped() async throws {
        let broker = try await Broker.start()
        defer { broker.stop() }
        let deployment = try await Deployment(broker: broker)
        let key = APIKeys.generate(name: "writer", roles: [.producer])
        let service = try await RunningService.start(
            try deployment.environment(
                logger: LogCapture().logger(), arguments: ["--max-pending", "1", "--delivery-timeout", "10"],
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
        let families = [
            "loop_ingest_events_accepted_total{type=\"loop.observation.v1\"}", "loop_ingest_events_duplicate_total{type=",
            "loop_ingest_events_rejected_total{reason=\"out_of_range\"}", "loop_ingest_batch_events_bucket",
            "loop_ingest_request_events_bucket", "loop_ingest_latency_seconds_bucket", "loop_ingest_queue_depth_events",
            "loop_ingest_producer_queue_records", "loop_ingest_consumer_lag_records",
        ]
        let text = service.metricsText
        for family in families { #expect(text.contains(family), "no \(family) in the metrics") }

        // SIGKILL: a SIGTERM lets Tansu finish what it has, and the event would get through.
        kill(broker.pid, SIGKILL)
        let brokerPort = Int(broker.bootstrap.split(separator: ":").last ?? "") ?? 0
        let gone = ContinuousClock.now + .seconds(5)
        while Self.canConnect(port: brokerPort), ContinuousClock.now < gone { try await Task.sleep(for: .milliseconds(20)) }
        let stuck = Task { try await HTTPPost.send(port: port, headers: headers, body: try event("b-2")) }
        // Generous deadlines: on a loaded 2-core CI machine the request can take seconds to arrive;
        // the 10 s delivery timeout keeps it pending long enough for the refusal below.
        let deadline = ContinuousClock.now + .seconds(30)
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

    static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

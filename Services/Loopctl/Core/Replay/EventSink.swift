import Contracts
import Foundation
import Kafka
import Logging

/// Where replay sends its events.
public protocol EventSink: Sendable {
    /// A short description for progress lines and the summary (`kafka loop.events.raw`).
    var destination: String { get }
    /// How many events one ``send(_:)`` should carry.
    var batchSize: Int { get }
    /// Sends a batch and returns once it is accepted (acknowledged by the broker or answered 2xx).
    func send(_ events: [CloudEvent]) async throws(LoopctlError)
}

/// Sends events to a Kafka topic in CloudEvents binary mode, keyed by subject (the entity).
public struct KafkaEventSink: EventSink {
    private let producer: KafkaProducer
    /// The topic written to (normally `loop.events.raw`).
    public let topic: String
    public let batchSize: Int

    /// Creates a sink with its own idempotent producer.
    public init(config: KafkaConfig, topic: String, batchSize: Int = 1000, logger: Logger) throws(LoopctlError) {
        do { producer = try KafkaProducer(config: config, logger: logger) } catch {
            throw LoopctlError(.kafka, "cannot create a Kafka producer: \(error.reason)", isRetryable: error.isRetriable)
        }
        self.topic = topic
        self.batchSize = max(1, batchSize)
    }

    public var destination: String { "kafka \(topic)" }

    /// The Kafka record of an event: binary mode, key = subject.
    public static func record(_ event: CloudEvent, topic: String) -> OutgoingRecord {
        let message = KafkaBinding.encode(event, mode: .binary, key: .subject)
        return OutgoingRecord(
            topic: topic, key: message.key, value: message.value,
            headers: message.headers.map { KafkaHeader(key: $0.name, value: $0.value) })
    }

    public func send(_ events: [CloudEvent]) async throws(LoopctlError) {
        do { _ = try await producer.send(events.map { Self.record($0, topic: topic) }) } catch {
            throw LoopctlError(.kafka, "sending \(events.count) events to \(topic) failed: \(error.reason)", isRetryable: error.isRetriable)
        }
    }
}

/// Sends events to ingest's `POST /v1/events` as CloudEvents batches, with an API key. A failed
/// batch is retried a few times with back-off (event ids are deterministic, so ingest dedupes).
public struct HTTPEventSink: EventSink {
    /// The events endpoint, e.g. `http://127.0.0.1:8081/v1/events`.
    public let url: URL
    private let apiKey: String?
    private let client: HTTPClient
    public let batchSize: Int
    /// How often a batch is tried before replay gives up.
    public let attempts: Int

    /// Creates a sink posting to `ingestURL` + `/v1/events`.
    public init(ingestURL: URL, apiKey: String?, batchSize: Int = 200, attempts: Int = 5, client: HTTPClient = HTTPClient()) {
        url = ingestURL.appendingPathComponent("v1").appendingPathComponent("events")
        self.apiKey = apiKey
        self.client = client
        self.batchSize = max(1, batchSize)
        self.attempts = max(1, attempts)
    }

    public var destination: String { "http \(url.absoluteString)" }

    /// The request for a batch: `application/cloudevents-batch+json`, `Authorization: Bearer <key>`.
    public func request(for events: [CloudEvent]) -> HTTPRequest {
        var headers = ["Content-Type": JSONFormat.batchMediaType]
        if let apiKey { headers["Authorization"] = "Bearer \(apiKey)" }
        return HTTPRequest(method: "POST", url: url, headers: headers, body: JSONFormat.encodeBatch(events))
    }

    public func send(_ events: [CloudEvent]) async throws(LoopctlError) {
        let request = request(for: events)
        var delay = Duration.milliseconds(200)
        for attempt in 1...attempts {
            let failure: LoopctlError
            do {
                let reply = try await client.send(request)
                if reply.isSuccess { return }
                failure = LoopctlError(
                    .http, "ingest answered \(reply.status): \(reply.text.prefix(500))",
                    isRetryable: reply.status == 429 || reply.status >= 500)
            } catch {
                failure = error
            }
            if !failure.isRetryable || attempt == attempts { throw failure }
            try? await Task.sleep(for: delay)
            delay *= 2
        }
    }
}

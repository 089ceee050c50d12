import Contracts
import Foundation
import Kafka
import Logging

/// Writes who-did-what-when entries to `loop.audit`, keyed by the actor.
///
/// `record` waits for the broker's acknowledgement: an admin action is reported done only once its
/// audit entry is durable. Failures are logged and rethrown to the caller.
public struct AuditLog: Sendable {
    let producer: KafkaProducer
    let topic: String
    let service: String
    let logger: Logger

    public init(producer: KafkaProducer, topic: String, service: String, logger: Logger) {
        self.producer = producer
        self.topic = topic
        self.service = service
        self.logger = logger
    }

    /// Writes one entry and waits for it to be acknowledged.
    public func record(
        actor: String, action: String, target: String? = nil, reason: String? = nil, details: JSONValue = .object([:])
    ) async throws {
        let entry = AuditEntry(
            timeMs: Int64(Date().timeIntervalSince1970 * 1000), service: service, actor: actor, action: action,
            target: target, reason: reason, details: details)
        do {
            _ = try await producer.send(OutgoingRecord(topic: topic, key: Array(actor.utf8), value: entry.bytes))
        } catch {
            logger.error("audit entry not written", metadata: ["audit.action": "\(action)", "error": "\(error)"])
            throw error
        }
    }

    /// An ``AuditHook`` that writes refused API requests as `auth.failed` entries.
    public var authFailureHook: AuditHook {
        { failure in
            try? await record(
                actor: failure.keyName ?? "anonymous", action: "auth.failed", target: "\(failure.method) \(failure.path)",
                reason: failure.reason.rawValue, details: ["requiredRole": .string(failure.requiredRole.rawValue)])
        }
    }
}

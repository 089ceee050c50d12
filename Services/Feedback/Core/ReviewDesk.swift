import Contracts
import Foundation
import Hummingbird
import Kafka
import NIOCore
import ServiceKit

/// Human review over HTTP: the queue of pending review-routed predictions and verdicts on them.
///
/// A verdict becomes a `loop.review.v1` event on `loop.events` (keyed by the prediction's entity,
/// so it reaches the partition holding the prediction), which the join treats as an outcome with
/// label source `review`; an audit entry names the reviewer.
struct ReviewDesk: Sendable {
    let store: JoinStore
    let producer: KafkaProducer
    let audit: AuditLog
    let eventsTopic: String
    let threshold: Double
    let positiveLabel: String

    /// The largest verdict body accepted.
    static let maxBodyBytes = 16 * 1024

    /// `GET /v1/reviews?limit=` and `POST /v1/reviews/{requestId}`, both behind `requireRole`.
    func addRoutes(to router: Router<LoopRequestContext>, requireRole: RequireRole<LoopRequestContext>) {
        let group = router.group("v1/reviews").add(middleware: requireRole)
        group.get { request, _ in
            let limit = request.uri.queryParameters.get("limit").flatMap { Int($0) }.map { min(max($0, 1), 1000) } ?? 100
            let queue = try store.reviewQueue(threshold: threshold, limit: limit)
            let items: [JSONValue] = queue.map { item in
                [
                    "requestId": .string(item.requestId), "entity": .string(item.entity),
                    "eventTimeMs": .int(item.eventTimeMs), "deadlineMs": .int(item.deadlineMs),
                    "score": JSONValue(item.score), "uncertainty": JSONValue(abs(item.score - threshold)),
                ]
            }
            return Self.json(.ok, ["reviews": .array(items), "total": .int(Int64(try store.reviewQueueSize()))])
        }
        group.post(":requestId") { request, context in
            guard let requestId = context.parameters.get("requestId") else { throw ServiceError.badRequest("no requestId") }
            let body = try await request.body.collect(upTo: Self.maxBodyBytes)
            let verdict: JSONValue
            do {
                verdict = try JSONValue.parse(Array(body.readableBytesView))
            } catch {
                throw ServiceError.badRequest("the verdict is not JSON: \(error)")
            }
            let reviewer = context.identity?.name ?? "anonymous"
            let accepted = try await submit(requestId: requestId, verdict: verdict, reviewer: reviewer)
            return Self.json(.accepted, accepted)
        }
    }

    /// Turns a verdict into a review event and an audit entry; returns the response body.
    func submit(requestId: String, verdict: JSONValue, reviewer: String) async throws -> JSONValue {
        guard let label = verdict["label"], !label.isNull else {
            throw ServiceError.badRequest("a verdict needs a `label` (\"\(positiveLabel)\" is the positive class)")
        }
        switch label {
        case .string, .int, .double, .bool: break
        default: throw ServiceError.badRequest("`label` must be a string, number or boolean")
        }
        let note = verdict["note"]?.stringValue
        guard let prediction = try store.prediction(requestId: requestId) else {
            throw ServiceError.notFound("no prediction \(requestId) is waiting for a label")
        }
        guard prediction.isPending else {
            throw ServiceError(.init("already_labeled"), "prediction \(requestId) already has a label", status: .conflict)
        }
        let eventTimeMs = max(prediction.eventTimeMs, store.clocks[prediction.partition] ?? prediction.eventTimeMs)
        var data: JSONObject = [
            PayloadField.requestId: .string(requestId), PayloadField.label: label, PayloadField.reviewer: .string(reviewer),
        ]
        if let note { data[PayloadField.note] = .string(note) }
        let event = CloudEvent(
            id: UUID().uuidString, source: "feedbackloop/feedback", type: EventType.review.description,
            subject: prediction.entity,
            time: Timestamp(seconds: eventTimeMs / 1000, nanoseconds: Int32(eventTimeMs % 1000) * 1_000_000),
            data: .json(.object(data)))
        let message = KafkaBinding.encode(event, mode: .binary, key: .subject)
        _ = try await producer.send(OutgoingRecord(
            topic: eventsTopic, key: message.key, value: message.value,
            headers: message.headers.map { KafkaHeader(key: $0.name, value: $0.value) }))
        var details: JSONObject = ["label": label, "entity": .string(prediction.entity), "score": JSONValue(prediction.score)]
        if let note { details["note"] = .string(note) }
        try await audit.record(actor: reviewer, action: "review.verdict", target: requestId, details: .object(details))
        return ["requestId": .string(requestId), "label": label, "reviewer": .string(reviewer), "status": "accepted"]
    }

    static func json(_ status: HTTPResponse.Status, _ body: JSONValue) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body.canonicalBytes())))
    }
}

import Contracts
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Prometheus
import ServiceKit

/// `POST /v1/events`: CloudEvents in structured, batch or binary mode, for API keys with the
/// `producer` role.
///
/// Answers: 202 with the outcome (a batch: one result per event, in order); 400 when the body is not
/// what its content type says or a single event is rejected (its dead letter is written); 401/403
/// from ``RequireRole``; 413 over the body, batch-count or payload limit; 503 with `Retry-After`
/// while the writer is back-pressured, not ready yet or the broker does not acknowledge. Bad input
/// never causes a 500.
struct HTTPIngest: Sendable {
    let intake: Intake
    let writer: EventWriter
    let settings: IngestSettings
    let metrics: IngestMetrics
    let ready: @Sendable () -> Bool

    /// Adds the route, behind `auth`, to `router`.
    func register(on router: Router<LoopRequestContext>, auth: RequireRole<LoopRequestContext>) {
        router.group("v1/events").add(middleware: auth).post { request, context in
            await handle(request, peer: context.remoteAddress.map(Self.describe))
        }
    }

    static func describe(_ address: SocketAddress) -> String {
        if let ip = address.ipAddress, let port = address.port { return "\(ip):\(port)" }
        return address.description
    }

    func handle(_ request: Request, peer: String?) async -> Response {
        guard ready() else { return Self.unavailable("ingest is starting: recovery is not finished") }
        let pending = writer.pendingItems
        guard pending < settings.maxPendingEvents else {
            return Self.unavailable("ingest is back-pressured: \(pending) events are waiting to be written")
        }
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: settings.httpMaxBodyBytes)
        } catch {
            return Self.json(.contentTooLarge, [
                "error": "too_large", "message": .string("the body is over the limit of \(settings.httpMaxBodyBytes) bytes"),
            ])
        }
        let body = Array(buffer.readableBytesView)
        let headers = request.headers.map { (name: $0.name.rawName, value: $0.value) }

        switch intake.items(httpHeaders: headers, body: body, peer: peer, maxBatch: settings.httpMaxBatch) {
        case .failure(let refused):
            if refused.rejection.reason == .tooLarge {
                return Self.json(.contentTooLarge, Self.rejectionFields(refused.rejection))
            }
            do {
                _ = try await writer.submit([.rejected(refused.rejection, deadLetter: refused.deadLetter, position: nil)])
            } catch {
                return Self.unavailable("the dead letter could not be written: \(error)")
            }
            return Self.json(.badRequest, Self.rejectionFields(refused.rejection))

        case .success(.single(let item, let id)):
            metrics.requestEvents.record(1.0)
            let outcome: EventOutcome
            do {
                outcome = try await writer.submit([item])[0]
            } catch {
                return Self.unavailable("the event could not be written: \(error)")
            }
            switch outcome {
            case .accepted: return Self.json(.accepted, ["id": JSONValue(id), "status": "accepted"])
            case .duplicate: return Self.json(.accepted, ["id": JSONValue(id), "status": "duplicate"])
            case .rejected(let rejection):
                var fields = Self.rejectionFields(rejection)
                fields["id"] = JSONValue(id)
                return Self.json(rejection.reason == .tooLarge ? .contentTooLarge : .badRequest, fields)
            }

        case .success(.batch(let entries)):
            metrics.requestEvents.record(Double(entries.count))
            let outcomes: [EventOutcome]
            do {
                outcomes = try await writer.submit(entries.map(\.item))
            } catch {
                return Self.unavailable("the batch could not be written: \(error)")
            }
            var counts = (accepted: 0, duplicate: 0, rejected: 0)
            var results: [JSONValue] = []
            results.reserveCapacity(outcomes.count)
            for (entry, outcome) in zip(entries, outcomes) {
                var result: JSONObject
                switch outcome {
                case .accepted:
                    counts.accepted += 1
                    result = ["status": "accepted"]
                case .duplicate:
                    counts.duplicate += 1
                    result = ["status": "duplicate"]
                case .rejected(let rejection):
                    counts.rejected += 1
                    result = Self.rejectionFields(rejection)
                }
                result["id"] = JSONValue(entry.id)
                results.append(.object(result))
            }
            return Self.json(.accepted, [
                "accepted": .int(Int64(counts.accepted)), "duplicate": .int(Int64(counts.duplicate)),
                "rejected": .int(Int64(counts.rejected)), "results": .array(results),
            ])
        }
    }

    // MARK: - Responses

    static func rejectionFields(_ rejection: Rejection) -> JSONObject {
        ["status": "rejected", "reason": .string(rejection.reason.rawValue), "field": JSONValue(rejection.field),
         "message": .string(rejection.message)]
    }

    static func json(_ status: HTTPResponse.Status, _ object: JSONObject) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: JSONValue.object(object).canonicalBytes())))
    }

    static func unavailable(_ message: String) -> Response {
        var response = json(.serviceUnavailable, ["error": "unavailable", "message": .string(message)])
        response.headers[.retryAfter] = "1"
        return response
    }
}

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
            return Response(
                status: .accepted, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: Self.batchAnswer(ids: entries.map(\.id), outcomes: outcomes))))
        }
    }

    // MARK: - Responses

    /// The canonical JSON answer to a batch, written straight into bytes: `accepted`, `duplicate`
    /// and `rejected` counts and one result per event, in order (the same bytes as the JSON object
    /// `{"accepted": …, "duplicate": …, "rejected": …, "results": [{"id": …, "status": …}, …]}`).
    static func batchAnswer(ids: [String?], outcomes: [EventOutcome]) -> [UInt8] {
        var counts = (accepted: 0, duplicate: 0, rejected: 0)
        var results: [UInt8] = []
        results.reserveCapacity(outcomes.count * 48)
        for (id, outcome) in zip(ids, outcomes) {
            results.append(results.isEmpty ? UInt8(ascii: "[") : UInt8(ascii: ","))
            switch outcome {
            case .accepted:
                counts.accepted += 1
                appendResult(id: id, status: "accepted", to: &results)
            case .duplicate:
                counts.duplicate += 1
                appendResult(id: id, status: "duplicate", to: &results)
            case .rejected(let rejection):
                counts.rejected += 1
                var fields = rejectionFields(rejection)
                fields["id"] = JSONValue(id)
                results += JSONValue.object(fields).canonicalBytes()
            }
        }
        results.append(contentsOf: results.isEmpty ? "[]".utf8 : "]".utf8)
        var answer: [UInt8] = []
        answer.reserveCapacity(results.count + 80)
        answer += #"{"accepted":\#(counts.accepted),"duplicate":\#(counts.duplicate),"rejected":\#(counts.rejected),"results":"#.utf8
        answer += results
        answer.append(UInt8(ascii: "}"))
        return answer
    }

    /// Appends `{"id":<id>,"status":"<status>"}`.
    private static func appendResult(id: String?, status: StaticString, to output: inout [UInt8]) {
        output += #"{"id":"#.utf8
        if let id {
            var id = id
            let plain = id.withUTF8 { text in
                guard text.allSatisfy({ $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) else { return false }
                output.append(UInt8(ascii: "\""))
                output += text
                output.append(UInt8(ascii: "\""))
                return true
            }
            if !plain { output += JSONValue.string(id).canonicalBytes() }
        } else {
            output += "null".utf8
        }
        output += #","status":""#.utf8
        output += UnsafeRawBufferPointer(start: status.utf8Start, count: status.utf8CodeUnitCount)
        output += #""}"#.utf8
    }

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

import Contracts
import Foundation
import Hummingbird
import NIOCore
import ServiceKit

/// The retrainer's HTTP API on the admin server:
/// - `GET /v1/models` (viewer): the serving state and a summary of every version.
/// - `GET /v1/models/{version}` (viewer): the full version record, lineage and model card.
/// - `POST /v1/models/{version}/promote` (operator): make a version the champion.
/// - `POST /v1/rollback` (operator): restore the previous champion.
/// - `POST /v1/retrain` (operator): request a training run (202; coalesces with a run in progress).
///
/// POST bodies may carry `{"reason": "..."}`; the key's name and the reason go to `loop.audit`.
enum RetrainerRoutes {
    static let maxBodyBytes = 16 * 1024

    static func add(
        to router: Router<LoopRequestContext>, environment: ServiceEnvironment, registry: ModelRegistry,
        coordinator: RetrainingCoordinator
    ) {
        let viewer = router.group("v1").add(middleware: environment.requireRole(.viewer))
        viewer.get("models") { _, _ in
            let book = await registry.snapshot
            let versions = book.versions.keys.sorted().compactMap { book.versions[$0] }.map(summary)
            return json(.ok, ["registry": book.state.json, "versions": .array(versions)])
        }
        viewer.get("models/{version}") { _, context in
            let version = try versionParameter(context)
            guard let record = await registry.snapshot.versions[version] else {
                throw ServiceError.notFound("model version \(version) does not exist")
            }
            return json(.ok, record.json)
        }

        let operatorGroup = router.group("v1").add(middleware: environment.requireRole(.operator))
        operatorGroup.post("models/{version}/promote") { request, context in
            let version = try versionParameter(context)
            let reason = try await reasonField(request, default: "promoted by an operator")
            let change = try await mapped { try await registry.promote(version, actor: actor(context), reason: reason) }
            return json(.ok, changeBody(change, registry: await registry.snapshot))
        }
        operatorGroup.post("rollback") { request, context in
            let reason = try await reasonField(request, default: "rolled back by an operator")
            let change = try await mapped { try await registry.rollback(actor: actor(context), reason: reason) }
            return json(.ok, changeBody(change, registry: await registry.snapshot))
        }
        operatorGroup.post("retrain") { request, context in
            let reason = try await reasonField(request, default: "requested by an operator")
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let trigger = Trigger(
                id: "manual:\(UUID().uuidString.lowercased())", kind: .manual, reason: reason, requestedAtMs: now,
                actor: actor(context))
            let disposition = try await mapped { try await coordinator.request(trigger) }
            return json(.accepted, ["trigger": trigger.json, "disposition": .string(disposition.rawValue)])
        }
    }

    // MARK: - Helpers

    static func summary(_ record: ModelVersionRecord) -> JSONValue {
        [
            "version": .int(record.version), "status": .string(record.status.rawValue), "parent": JSONValue(record.parent),
            "trigger": .string(record.trigger), "createdAtMs": .int(record.createdAtMs),
            "reasons": .array(record.reasons.map { .string($0) }),
            "holdout": record.lineage["holdout"] ?? .null,
            "featureSchemaHash": record.lineage["featureSchemaHash"] ?? .null,
        ]
    }

    static func changeBody(_ change: RegistryBook.Change, registry: RegistryBook) -> JSONValue {
        [
            "action": .string(change.action), "version": .int(change.version), "reason": .string(change.reason),
            "registry": registry.state.json,
        ]
    }

    static func actor(_ context: LoopRequestContext) -> String {
        context.identity?.name ?? "anonymous"
    }

    static func versionParameter(_ context: LoopRequestContext) throws -> Int64 {
        guard let text = context.parameters.get("version"), let version = Int64(text), version > 0 else {
            throw ServiceError.badRequest("the model version must be a positive integer")
        }
        return version
    }

    static func reasonField(_ request: Request, default fallback: String) async throws -> String {
        var request = request
        let buffer = try await request.collectBody(upTo: maxBodyBytes)
        guard buffer.readableBytes > 0 else { return fallback }
        let bytes = Array(buffer.readableBytesView)
        guard let body = try? JSONValue.parse(bytes), body.objectValue != nil else {
            throw ServiceError.badRequest("the body must be a JSON object such as {\"reason\": \"...\"}")
        }
        guard let reason = body["reason"] else { return fallback }
        guard let text = reason.stringValue, !text.isEmpty else {
            throw ServiceError.badRequest("reason must be a non-empty string")
        }
        return text
    }

    /// Runs `body`, turning retrainer errors into HTTP errors.
    static func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RetrainerError {
            switch error.code {
            case .unknownVersion: throw ServiceError(.notFound, error.reason, status: .notFound)
            case .invalidTransition: throw ServiceError("conflict", error.reason, status: .conflict)
            case .publishing, .storage:
                throw ServiceError("unavailable", error.reason, status: .serviceUnavailable, isRetryable: true)
            case .training, .malformedRecord: throw ServiceError(.internal, error.reason, status: .internalServerError)
            }
        }
    }

    static func json(_ status: HTTPResponse.Status, _ body: JSONValue) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body.canonicalBytes())))
    }
}

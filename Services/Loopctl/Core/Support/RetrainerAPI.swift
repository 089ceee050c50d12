import Contracts
import Foundation

/// The requests loopctl makes to the retrainer's admin API, and how their answers are shown.
public struct RetrainerAPI: Sendable {
    /// The retrainer's admin base URL.
    public var baseURL: URL
    /// The operator API key, sent as `Authorization: Bearer <key>`.
    public var apiKey: String?

    public init(baseURL: URL, apiKey: String?) {
        self.baseURL = baseURL
        self.apiKey = apiKey
    }

    // MARK: - Requests

    /// `GET /v1/models`
    public func listModels() -> HTTPRequest { request("GET", ["v1", "models"]) }
    /// `GET /v1/models/{version}`
    public func showModel(_ version: Int64) -> HTTPRequest { request("GET", ["v1", "models", String(version)]) }
    /// `POST /v1/models/{version}/promote` with `{"reason": …}`
    public func promote(_ version: Int64, reason: String?) -> HTTPRequest {
        request("POST", ["v1", "models", String(version), "promote"], body: Self.reasonBody(reason))
    }
    /// `POST /v1/rollback` with `{"reason": …}`
    public func rollback(reason: String?) -> HTTPRequest { request("POST", ["v1", "rollback"], body: Self.reasonBody(reason)) }
    /// `POST /v1/retrain` with `{"reason": …}`
    public func retrain(reason: String?) -> HTTPRequest { request("POST", ["v1", "retrain"], body: Self.reasonBody(reason)) }

    func request(_ method: String, _ path: [String], body: JSONValue? = nil) -> HTTPRequest {
        var url = baseURL
        for component in path { url.appendPathComponent(component) }
        var headers = ["Accept": "application/json"]
        if let apiKey { headers["Authorization"] = "Bearer \(apiKey)" }
        if body != nil { headers["Content-Type"] = "application/json" }
        return HTTPRequest(method: method, url: url, headers: headers, body: body?.canonicalBytes())
    }

    static func reasonBody(_ reason: String?) -> JSONValue {
        .object(reason.map { ["reason": .string($0)] } ?? [:])
    }

    /// Sends `request` and returns the JSON answer; a non-2xx answer throws with the server's message.
    public func call(_ request: HTTPRequest, client: HTTPClient) async throws(LoopctlError) -> JSONValue {
        let reply = try await client.send(request)
        let body = try? JSONValue.parse(reply.body)
        guard reply.isSuccess else {
            let message = body?["message"]?.stringValue ?? String(reply.text.prefix(300))
            let hint = reply.status == 401 || reply.status == 403 ? " (set LOOP_API_KEY to an operator key)" : ""
            throw LoopctlError(
                .http, "retrainer answered \(reply.status) to \(request.method) \(request.url.path): \(message)\(hint)",
                isRetryable: reply.status >= 500 || reply.status == 429)
        }
        return body ?? .object([:])
    }

    // MARK: - Output

    /// One row of `models list`, read leniently from a model version's JSON.
    public struct ModelSummary: Sendable, Hashable {
        public var version: Int64
        public var status: String
        public var trigger: String
        public var createdAtMs: Int64?
        public var parent: Int64?
        public var holdoutAUC: Double?
        public var reason: String?
    }

    /// The model versions of a `GET /v1/models` answer: an array, or an object with `versions`
    /// (what the retrainer answers, next to `registry`) or `models`.
    public static func models(in answer: JSONValue) -> [ModelSummary] {
        let list = answer.arrayValue ?? answer["versions"]?.arrayValue ?? answer["models"]?.arrayValue ?? []
        return list.compactMap { element in
            guard let version = element["version"]?.int64Value else { return nil }
            let aucPaths: [[String]] = [
                ["holdoutAUC"], ["holdout", "candidate", "auc"], ["metrics", "auc"], ["lineage", "holdout", "candidate", "auc"],
                ["lineage", "metrics", "candidate", "auc"], ["lineage", "candidate", "auc"], ["lineage", "holdoutAUC"],
            ]
            let auc = aucPaths.lazy.compactMap { path in
                path.reduce(Optional(element)) { value, key in value?[key] }?.doubleValue
            }.first
            return ModelSummary(
                version: version, status: element["status"]?.stringValue ?? "-",
                trigger: element["trigger"]?.stringValue ?? "-", createdAtMs: element["createdAtMs"]?.int64Value,
                parent: element["parent"]?.int64Value, holdoutAUC: auc,
                reason: element["reasons"]?.arrayValue?.last?.stringValue)
        }.sorted { $0.version < $1.version }
    }

    /// The `models list` table; the champion (from the answer's `registry`/`champion`) is starred.
    public static func listText(_ answer: JSONValue) -> String {
        let models = models(in: answer)
        guard !models.isEmpty else { return "no model versions yet (the baseline policy answers)" }
        let champion = answer["registry"]?["champion"]?.int64Value ?? answer["champion"]?.int64Value
        var rows = [["VERSION", "STATUS", "TRIGGER", "CREATED", "PARENT", "HOLDOUT AUC", "REASON"]]
        for model in models {
            rows.append([
                (model.version == champion ? "*" : " ") + String(model.version), model.status, model.trigger,
                model.createdAtMs.map(Format.time(ms:)) ?? "-", model.parent.map(String.init) ?? "-",
                Format.number(model.holdoutAUC), model.reason.map { String($0.prefix(60)) } ?? "-",
            ])
        }
        return Format.table(rows)
    }

    /// `models show`: the model card when the answer has one, else the JSON.
    public static func showText(_ answer: JSONValue) -> String {
        let model = answer["model"] ?? answer
        if let card = model["card"]?.stringValue, !card.isEmpty { return card }
        var object = model.objectValue ?? JSONObject()
        object.removeValue(forKey: "artifact")
        return String(decoding: JSONValue.object(object).canonicalBytes(), as: UTF8.self)
    }

    /// The outcome of promote, rollback or retrain: the answer's `message`, else its JSON.
    public static func actionText(_ answer: JSONValue, fallback: String) -> String {
        if let message = answer["message"]?.stringValue { return message }
        if case .object(let object) = answer, object.isEmpty { return fallback }
        return String(decoding: answer.canonicalBytes(), as: UTF8.self)
    }
}

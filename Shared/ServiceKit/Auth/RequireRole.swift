import Foundation
import HTTPTypes
import Hummingbird
import Prometheus

/// A request context that can carry the identity an API key authenticated.
public protocol AuthenticatedRequestContext: RequestContext {
    var identity: APIKeyIdentity? { get set }
}

/// A refused request, handed to the ``AuditHook``.
public struct AuthFailure: Sendable {
    public enum Reason: String, Sendable {
        /// No `Authorization: Bearer` or `X-API-Key` header (401).
        case missingKey = "missing_key"
        /// A key that is not in the keys file (401).
        case unknownKey = "unknown_key"
        /// A valid key without the role the route needs (403).
        case missingRole = "missing_role"
    }

    public var reason: Reason
    /// The role the route needs.
    public var requiredRole: Role
    /// The key's name when the key was valid.
    public var keyName: String?
    public var method: String
    public var path: String
    public var time: Date
}

/// Called for every refused request; a service wires it to `loop.audit`.
public typealias AuditHook = @Sendable (AuthFailure) async -> Void

/// Middleware that lets a request through only with an API key holding `role`.
///
/// The key comes from `Authorization: Bearer <key>` or `X-API-Key: <key>`. Without a known key the
/// answer is 401, with a key lacking the role 403; both count in `loop_auth_failures_total{reason}`
/// and call the audit hook. On success the context's ``AuthenticatedRequestContext/identity`` is set.
///
/// ```swift
/// router.group("v1/events").add(middleware: RequireRole(.producer, keys: keys, metrics: registry, audit: audit))
/// ```
public struct RequireRole<Context: AuthenticatedRequestContext>: RouterMiddleware {
    private let role: Role
    private let keys: APIKeys
    private let audit: AuditHook
    private let missingKey: Counter
    private let unknownKey: Counter
    private let missingRole: Counter

    public init(_ role: Role, keys: APIKeys, metrics: PrometheusCollectorRegistry, audit: @escaping AuditHook) {
        self.role = role
        self.keys = keys
        self.audit = audit
        func counter(_ reason: AuthFailure.Reason) -> Counter {
            metrics.makeCounter(
                descriptor: MetricNameDescriptor(
                    namespace: "loop", subsystem: "auth", metricName: "failures", unitName: "total",
                    helpText: "Requests refused for a missing or unknown API key or a missing role."),
                labels: [("reason", reason.rawValue)])
        }
        missingKey = counter(.missingKey)
        unknownKey = counter(.unknownKey)
        missingRole = counter(.missingRole)
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let key = Self.presentedKey(in: request.headers) else {
            try await refuse(request, .missingKey, keyName: nil,
                             .unauthorized("an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"))
        }
        guard let identity = keys.identity(forKey: key) else {
            try await refuse(request, .unknownKey, keyName: nil, .unauthorized("the API key is not valid"))
        }
        guard identity.roles.contains(role) else {
            try await refuse(request, .missingRole, keyName: identity.name,
                             .forbidden("the API key '\(identity.name)' lacks the role \(role.rawValue)"))
        }
        var context = context
        context.identity = identity
        return try await next(request, context)
    }

    private func refuse(
        _ request: Request, _ reason: AuthFailure.Reason, keyName: String?, _ error: ServiceError
    ) async throws -> Never {
        switch reason {
        case .missingKey: missingKey.increment()
        case .unknownKey: unknownKey.increment()
        case .missingRole: missingRole.increment()
        }
        await audit(AuthFailure(reason: reason, requiredRole: role, keyName: keyName,
                                method: request.method.rawValue, path: request.uri.path, time: Date()))
        throw error
    }

    /// The key of `Authorization: Bearer <key>` or else of `X-API-Key`.
    static func presentedKey(in headers: HTTPFields) -> String? {
        if let authorization = headers[.authorization] {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                let key = parts[1].trimmingCharacters(in: .whitespaces)
                if !key.isEmpty { return key }
            }
        }
        if let name = HTTPField.Name("X-API-Key"), let key = headers[name]?.trimmingCharacters(in: .whitespaces),
           !key.isEmpty {
            return key
        }
        return nil
    }
}

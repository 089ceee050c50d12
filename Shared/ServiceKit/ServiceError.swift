import Hummingbird

/// The one error type of ServiceKit: a stable machine-readable code, a human reason, the HTTP status
/// it answers with when it reaches a client, and whether trying again can help.
///
/// Route handlers throw it and the admin server's error middleware turns it into a response with
/// the JSON body `{"error": code, "message": message}`. Settings and start-up failures use it too,
/// and the runner turns those into an exit code.
public struct ServiceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable, snake_case error code. Services add their own with `ServiceError.Code("...")`.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public init(stringLiteral value: String) { self.rawValue = value }
        public var description: String { rawValue }

        // MARK: Start-up
        /// A command-line argument that is not a declared flag.
        public static let unknownFlag: Code = "unknown_flag"
        /// A flag or env var whose value does not parse or is out of range.
        public static let badValue: Code = "bad_value"
        /// A required setting that was given neither as a flag nor as an env var.
        public static let missingSetting: Code = "missing_setting"
        /// `loop.yaml` is missing or invalid.
        public static let badConfig: Code = "bad_config"
        /// The API keys file or env var cannot be read or has a malformed line.
        public static let badKeys: Code = "bad_keys"
        /// The runtime environment cannot run the service (e.g. an old librdkafka).
        public static let unsupportedEnvironment: Code = "unsupported_environment"

        // MARK: HTTP
        public static let badRequest: Code = "bad_request"
        public static let unauthorized: Code = "unauthorized"
        public static let forbidden: Code = "forbidden"
        public static let notFound: Code = "not_found"
        public static let methodNotAllowed: Code = "method_not_allowed"
        public static let payloadTooLarge: Code = "payload_too_large"
        public static let notReady: Code = "not_ready"
        public static let `internal`: Code = "internal"
    }

    public var code: Code
    /// What went wrong, for a person.
    public var message: String
    /// The status the error answers with over HTTP.
    public var status: HTTPResponse.Status
    /// Whether the same request or start-up can succeed if tried again later.
    public var isRetryable: Bool

    public init(_ code: Code, _ message: String, status: HTTPResponse.Status = .internalServerError, isRetryable: Bool = false) {
        self.code = code
        self.message = message
        self.status = status
        self.isRetryable = isRetryable
    }

    public var description: String { "\(code): \(message)" }

    // MARK: - Common errors

    public static func badRequest(_ message: String) -> ServiceError {
        ServiceError(.badRequest, message, status: .badRequest)
    }

    public static func notFound(_ message: String) -> ServiceError {
        ServiceError(.notFound, message, status: .notFound)
    }

    public static func unauthorized(_ message: String) -> ServiceError {
        ServiceError(.unauthorized, message, status: .unauthorized)
    }

    public static func forbidden(_ message: String) -> ServiceError {
        ServiceError(.forbidden, message, status: .forbidden)
    }

    public static func notReady(_ message: String) -> ServiceError {
        ServiceError(.notReady, message, status: .serviceUnavailable, isRetryable: true)
    }
}

// MARK: - HTTP

extension ServiceError: HTTPResponseError {
    /// The error as a response with the JSON body `{"error": code, "message": message}`.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Response.json(status: status, body: ["error": code.rawValue, "message": message])
    }
}

extension Response {
    /// A response whose body is the JSON encoding of a flat string dictionary (keys sorted).
    static func json(status: HTTPResponse.Status, body: [String: String]) -> Response {
        let pairs = body.sorted { $0.key < $1.key }.map { "\(JSONText.quote($0.key)):\(JSONText.quote($0.value))" }
        let text = "{" + pairs.joined(separator: ",") + "}"
        return Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}

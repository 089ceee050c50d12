import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// An HTTP request as loopctl builds it: testable without a server.
public struct HTTPRequest: Sendable, Hashable {
    public var method: String
    public var url: URL
    public var headers: [String: String]
    public var body: [UInt8]?

    public init(method: String, url: URL, headers: [String: String] = [:], body: [UInt8]? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// A response: status and body bytes.
public struct HTTPReply: Sendable, Hashable {
    public var status: Int
    public var body: [UInt8]

    public init(status: Int, body: [UInt8]) {
        self.status = status
        self.body = body
    }

    /// Whether the status is 2xx.
    public var isSuccess: Bool { (200..<300).contains(status) }
    /// The body as text (invalid UTF-8 repaired).
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A small HTTP client over Foundation's `URLSession` (FoundationNetworking on Linux).
public struct HTTPClient: Sendable {
    private let session: URLSession
    /// How long one request may take.
    public let timeout: Duration

    /// Creates a client whose requests time out after `timeout`.
    public init(timeout: Duration = .seconds(10)) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = Double(timeout.components.seconds)
        configuration.timeoutIntervalForResource = Double(timeout.components.seconds)
        session = URLSession(configuration: configuration)
        self.timeout = timeout
    }

    /// Sends `request`; throws ``LoopctlError/Code/http`` (retryable) when the server cannot be reached.
    /// Error statuses are returned, not thrown.
    public func send(_ request: HTTPRequest) async throws(LoopctlError) -> HTTPReply {
        var urlRequest = URLRequest(url: request.url)
        urlRequest.httpMethod = request.method
        for (name, value) in request.headers { urlRequest.setValue(value, forHTTPHeaderField: name) }
        if let body = request.body { urlRequest.httpBody = Data(body) }
        do {
            let (data, response) = try await session.data(for: urlRequest)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            return HTTPReply(status: status, body: Array(data))
        } catch {
            let detail = (error as NSError).userInfo[NSLocalizedDescriptionKey] as? String
                ?? ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError)?.localizedDescription
                ?? "\(error)"
            throw LoopctlError(.http, "\(request.method) \(request.url.absoluteString) failed: \(detail)", isRetryable: true)
        }
    }
}

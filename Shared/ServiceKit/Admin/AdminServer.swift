import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import Synchronization

// MARK: - Request context

/// The request context of every service's HTTP router: Hummingbird's core context plus the
/// identity an API key authenticated (see ``RequireRole``) and the peer's address.
public struct LoopRequestContext: AuthenticatedRequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var identity: APIKeyIdentity?
    /// The connected peer, when the channel knows it.
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

// MARK: - Router

/// The admin endpoints every service serves.
public enum AdminRoutes {
    /// The Prometheus text exposition format's content type.
    public static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// A router with JSON error responses, `/healthz` (200 while the process runs, with the
    /// ``LoopVersion``), `/readyz`
    /// (503 until `readiness` is ready, then 200) and `/metrics` (the Prometheus text of `metrics`).
    ///
    /// Services add their own routes to it before the ``AdminServer`` is made; the error middleware
    /// applies to them too.
    public static func makeRouter(
        readiness: Readiness, metrics: PrometheusCollectorRegistry
    ) -> Router<LoopRequestContext> {
        let router = Router(context: LoopRequestContext.self)
        router.add(middleware: ErrorResponseMiddleware())
        router.get("healthz") { _, _ in
            Response.json(status: .ok, body: ["status": "alive", "version": LoopVersion.current])
        }
        router.get("readyz") { _, _ in
            if let reason = readiness.reasonNotReady { throw ServiceError.notReady(reason) }
            return Response.json(status: .ok, body: ["status": "ready"])
        }
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: metricsContentType],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.emitToBuffer())))
        }
        return router
    }
}

/// Turns every error escaping a handler into a response with the JSON body
/// `{"error": code, "message": ...}`: ``ServiceError``s as they are, Hummingbird's `HTTPError`s by
/// their status, anything else as a 500 whose details are logged, not returned.
public struct ErrorResponseMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as ServiceError {
            throw error
        } catch let error as HTTPError {
            throw ServiceError(Self.code(for: error.status), error.body ?? error.status.reasonPhrase, status: error.status)
        } catch let error as any HTTPResponseError {
            throw ServiceError(Self.code(for: error.status), error.status.reasonPhrase, status: error.status)
        } catch {
            context.logger.error(
                "request failed", metadata: ["http.method": "\(request.method)", "http.path": "\(request.uri.path)",
                                             "error.message": "\(error)"])
            throw ServiceError(.internal, "internal error", status: .internalServerError)
        }
    }

    private static func code(for status: HTTPResponse.Status) -> ServiceError.Code {
        switch status {
        case .notFound: .notFound
        case .methodNotAllowed: .methodNotAllowed
        case .unauthorized: .unauthorized
        case .forbidden: .forbidden
        case .contentTooLarge: .payloadTooLarge
        case .serviceUnavailable: .notReady
        default: status.kind == .clientError ? .badRequest : .internal
        }
    }
}

// MARK: - Server

/// The service's HTTP server, a `Service` to run in the group: the admin endpoints and whatever
/// routes the service added to the router.
public struct AdminServer: Service {
    /// Where the server's connections and route handlers run.
    public enum Threading: Sendable {
        /// Connections on NIO's shared event loops, handlers on Swift's cooperative pool (each
        /// request is handed from one to the other and back): for handlers that may run long.
        case cooperativePool
        /// Everything on one event loop: accepting, reading, the handler and writing the response
        /// run on one thread with no hand-off, so a request costs no thread wake-ups beyond the
        /// socket's. For services whose handlers are short and never block for long, as every
        /// request of the server waits while one runs.
        case eventLoop
    }

    private let application: Application<RouterResponder<LoopRequestContext>>
    private let listening: ListeningPort
    private let loop: (any EventLoop)?

    /// A server for `router` on `host:port` (port 0 picks a free port, see ``boundPort()``), its
    /// handlers running as `threading` says.
    public init(router: Router<LoopRequestContext>, host: String, port: Int, threading: Threading = .cooperativePool, logger: Logger) {
        let listening = ListeningPort()
        self.listening = listening
        let loop: (any EventLoop)? = threading == .eventLoop ? MultiThreadedEventLoopGroup.singleton.next() : nil
        self.loop = loop
        application = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? port
                logger.info("admin server listening", metadata: ["admin.host": "\(host)", "admin.port": "\(port)"])
                listening.resolve(port)
            },
            eventLoopGroupProvider: loop.map { .shared($0) } ?? .singleton,
            logger: logger)
    }

    public func run() async throws {
        defer { listening.resolve(nil) }
        guard let loop else { return try await application.run() }
        // Every connection's task is a child of this one and inherits the preference.
        try await withTaskExecutorPreference(EventLoopTaskExecutor(loop: loop)) {
            try await application.run()
        }
    }

    /// The port the server listens on once it does, or `nil` if it stopped before binding.
    public func boundPort() async -> Int? {
        await listening.value()
    }
}

/// A port number that becomes known once, awaited by any number of tasks.
final class ListeningPort: Sendable {
    private struct State {
        var isResolved = false
        var port: Int?
        var waiters: [CheckedContinuation<Int?, Never>] = []
    }

    private let state = Mutex(State())

    func resolve(_ port: Int?) {
        let waiters = state.withLock { state -> [CheckedContinuation<Int?, Never>] in
            guard !state.isResolved else { return [] }
            state.isResolved = true
            state.port = port
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    func value() async -> Int? {
        await withCheckedContinuation { continuation in
            let resolved = state.withLock { state -> Int?? in
                if state.isResolved { return .some(state.port) }
                state.waiters.append(continuation)
                return .none
            }
            if let resolved { continuation.resume(returning: resolved) }
        }
    }
}

// MARK: - Event loop executor

/// Runs the jobs of tasks that prefer it on one NIO event loop, so a task started on the loop stays
/// there.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

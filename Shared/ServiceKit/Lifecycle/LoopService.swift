import Contracts
import Hummingbird
import Kafka
import Logging
import Prometheus
import ServiceLifecycle

/// One FeedbackLoop service: what ``ServiceRunner`` needs to parse its settings, build it and run it.
///
/// ```swift
/// public struct IngestService: LoopService, Service {
///     public static let name = "ingest"
///     public static let summary = "validates, dedupes and redacts events into loop.events"
///     public static let defaultAdminPort = 8081
///     public init(environment: ServiceEnvironment) async throws { … }
///     public func run() async throws { … }
/// }
/// ```
public protocol LoopService {
    /// The service's name: its logger label, metric prefix and default state directory (`ingest`).
    static var name: String { get }
    /// One line for `--help`.
    static var summary: String { get }
    /// The admin HTTP port when `LOOP_ADMIN_PORT` and `--admin-port` are not given.
    static var defaultAdminPort: Int { get }
    /// The service's own settings, beyond ``CommonSettings`` (none by default).
    static var settings: [any SettingDeclaration] { get }
    /// Where its admin server's handlers run (``AdminServer/Threading/cooperativePool`` by default).
    static var httpThreading: AdminServer.Threading { get }

    /// Builds the service: reads its settings, registers its readiness conditions, metrics and routes.
    /// An error stops the process before anything runs.
    init(environment: ServiceEnvironment) async throws

    /// The long-running parts, started in this order after the admin server and stopped in reverse
    /// order on SIGTERM/SIGINT. A service that is itself a `Service` runs as its only part by default.
    var parts: [any Service] { get }
}

extension LoopService {
    public static var settings: [any SettingDeclaration] { [] }
    public static var httpThreading: AdminServer.Threading { .cooperativePool }
}

extension LoopService where Self: Service {
    public var parts: [any Service] { [self] }
}

/// Everything a service is built from: its settings and `loop.yaml`, a logger, the metrics
/// registry `/metrics` serves, the readiness `/readyz` reports, the router of its HTTP server, the
/// Kafka client settings and its API keys.
public struct ServiceEnvironment {
    /// The service's name (`ingest`).
    public var name: String
    public var settings: Settings
    /// The common settings, to read with `settings[common.brokers]`.
    public var common: CommonSettings
    public var config: LoopConfig
    public var logger: Logger
    public var metrics: PrometheusCollectorRegistry
    public var readiness: Readiness
    /// The admin server's router: `/healthz`, `/readyz`, `/metrics` are on it; add the service's routes.
    public var router: Router<LoopRequestContext>
    /// Kafka client settings from the brokers and security settings, client id `feedbackloop-<name>`.
    public var kafka: KafkaConfig
    public var apiKeys: APIKeys
    /// Called for every refused API request; logs a warning until the service wires it to `loop.audit`.
    public var audit: AuditHook

    /// An environment from parts; ``ServiceRunner`` makes the real one, tests make their own.
    public init(
        name: String, settings: Settings, common: CommonSettings, config: LoopConfig, logger: Logger,
        metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), readiness: Readiness = Readiness(),
        router: Router<LoopRequestContext>? = nil, apiKeys: APIKeys = APIKeys(), audit: AuditHook? = nil
    ) {
        self.name = name
        self.settings = settings
        self.common = common
        self.config = config
        self.logger = logger
        self.metrics = metrics
        self.readiness = readiness
        self.router = router ?? AdminRoutes.makeRouter(readiness: readiness, metrics: metrics)
        self.kafka = common.kafkaConfig(from: settings, clientID: "feedbackloop-" + name)
        self.apiKeys = apiKeys
        self.audit = audit ?? { [logger] failure in
            logger.warning("request refused", metadata: [
                "auth.reason": "\(failure.reason.rawValue)", "auth.role": "\(failure.requiredRole.rawValue)",
                "auth.key": "\(failure.keyName ?? "-")", "http.method": "\(failure.method)", "http.path": "\(failure.path)",
            ])
        }
    }

    /// The service's local state directory (`LOOP_STATE_DIR`).
    public var stateDirectory: String { settings[common.stateDirectory] }

    /// Middleware admitting only requests whose API key holds `role`, counting and auditing refusals.
    public func requireRole(_ role: Role) -> RequireRole<LoopRequestContext> {
        RequireRole(role, keys: apiKeys, metrics: metrics, audit: audit)
    }
}

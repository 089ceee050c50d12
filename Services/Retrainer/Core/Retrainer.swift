import ServiceKit
import ServiceLifecycle

/// The retrainer service: retrains, gates and promotes models into loop.models.
///
/// Built by `ServiceRunner` from its `ServiceEnvironment`; it reports ready once running and runs
/// until graceful shutdown.
public struct RetrainerService: LoopService, Service {
    public static let name = "retrainer"
    public static let summary = "retrains, gates and promotes models into loop.models"
    public static let defaultAdminPort = 8085

    private let readiness: Readiness

    public init(environment: ServiceEnvironment) {
        readiness = environment.readiness
        readiness.require(Self.runningCondition)
    }

    public func run() async throws {
        readiness.satisfy(Self.runningCondition)
        try? await gracefulShutdown()
    }

    /// The readiness condition met while the service runs.
    static let runningCondition = "retrainer.running"
}

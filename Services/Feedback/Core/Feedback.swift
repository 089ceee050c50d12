import ServiceKit
import ServiceLifecycle

/// The feedback service: joins predictions with outcomes into loop.labeled and watches quality and drift.
///
/// Built by `ServiceRunner` from its `ServiceEnvironment`; it reports ready once running and runs
/// until graceful shutdown.
public struct FeedbackService: LoopService, Service {
    public static let name = "feedback"
    public static let summary = "joins predictions with outcomes into loop.labeled and watches quality and drift"
    public static let defaultAdminPort = 8084

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
    static let runningCondition = "feedback.running"
}

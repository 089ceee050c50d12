import ServiceKit
import ServiceLifecycle

/// The ingest service: validates, dedupes and redacts events into loop.events, rejects to loop.events.dlq.
///
/// Built by `ServiceRunner` from its `ServiceEnvironment`; it reports ready once running and runs
/// until graceful shutdown.
public struct IngestService: LoopService, Service {
    public static let name = "ingest"
    public static let summary = "validates, dedupes and redacts events into loop.events, rejects to loop.events.dlq"
    public static let defaultAdminPort = 8081

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
    static let runningCondition = "ingest.running"
}

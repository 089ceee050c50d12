import Contracts
import Hummingbird
import Kafka
import Logging
import ServiceKit
import ServiceLifecycle

/// The scorer service: scores every request with the champion model and writes loop.predictions.
///
/// Creates the topics, then runs a ``ScorerPipeline`` until graceful shutdown (which finishes the
/// batch in flight, commits and leaves the group). Serves `POST /v1/score` (role `producer`): a
/// structured-mode CloudEvent of type `loop.score_request.v1` in, the `Prediction` record out.
public struct ScorerService: LoopService, Service {
    public static let name = "scorer"
    public static let summary = "scores every request with the champion model and writes loop.predictions"
    public static let defaultAdminPort = 8083
    public static var settings: [any SettingDeclaration] { ScorerOptions.declarations }

    /// The data path.
    public let pipeline: ScorerPipeline
    private let layout: TopicLayout
    private let kafka: KafkaConfig
    private let logger: Logger

    public init(environment: ServiceEnvironment) async throws {
        let options = ScorerOptions(settings: environment.settings, topicPrefix: environment.config.topics.prefix)
        layout = TopicLayout(config: environment.config)
        kafka = environment.kafka
        logger = environment.logger
        pipeline = try ScorerPipeline(
            config: environment.config, options: options, kafka: environment.kafka,
            metrics: environment.metrics, readiness: environment.readiness, logger: environment.logger)
        Self.addRoutes(to: environment.router, pipeline: pipeline, environment: environment)
    }

    public func run() async throws {
        try await layout.ensureTopics(kafka: kafka, logger: logger)
        let pipeline = pipeline
        try await withGracefulShutdownHandler {
            try await pipeline.run()
        } onGracefulShutdown: {
            Task { await pipeline.stop() }
        }
    }

    static func addRoutes(to router: Router<LoopRequestContext>, pipeline: ScorerPipeline, environment: ServiceEnvironment) {
        let maxBytes = environment.config.events.maxPayloadBytes
        router.group("v1").add(middleware: environment.requireRole(.producer)).post("score") { request, _ in
            let body = try await request.body.collect(upTo: maxBytes)
            let event: CloudEvent
            do { event = try JSONFormat.decode(Array(buffer: body)) } catch {
                throw ServiceError.badRequest("the body is not a structured CloudEvent: \(error)")
            }
            guard let type = EventType(event.type), type.kind == .scoreRequest, type.isAccepted else {
                throw ServiceError.badRequest("the event type \(event.type) is not \(EventType.scoreRequest)")
            }
            let scoreRequest: ScoreRequest
            do throws(ScorerError) { scoreRequest = try ScoreRequest(event: event) } catch { throw ServiceError.badRequest(error.reason) }
            let prediction: Prediction
            do throws(ScorerError) { prediction = try await pipeline.score(scoreRequest) } catch {
                switch error.code {
                case .invalidRequest: throw ServiceError(ServiceError.Code("already_answered"), error.reason, status: .conflict)
                default: throw ServiceError(ServiceError.Code(error.code.rawValue), error.reason, status: .serviceUnavailable, isRetryable: true)
                }
            }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: prediction.bytes)))
        }
    }
}

import Contracts
import Feedback
import Foundation
import Kafka
import Learning
import Synchronization

// loop-bench feedback: joined prediction/outcome pairs per second through the feedback service's
// data path, with quality, drift and label-free estimates updating.
//
//   loop-bench feedback [--pairs 200000] [--batch 2000] [--features 16] [--lag 1500]
//
// `--lag N` puts each outcome N predictions after its own. The default, 1500 with batches of 2000,
// joins most outcomes in a later batch than their prediction, as in production, where labels
// arrive minutes to days after the score: the waiting prediction is stored and read back. `--lag 0`
// puts each outcome right after its prediction, so nearly every pair is joined within one batch.
//
// The service's JoinPipeline over batches already consumed: decode records (Prediction JSON,
// binary-mode CloudEvent outcomes), apply them to the SQLite join store (file, WAL) in one
// transaction with offsets and outbox, feed the monitor (champion + one shadow, drift on every
// feature against a registered artifact) and confirm the outbox as an immediate acknowledgement
// would. The stages run on tasks of their own, as in the service. Kafka itself is not in the loop:
// `loop-bench kafka` measures it.

struct FeedbackBenchOptions {
    var pairs = 200_000
    var batch = 2000
    var features = 16
    var lag = 1500

    init(_ arguments: [String]) throws {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            func value(minimum: Int = 1) throws -> Int {
                guard let text = iterator.next(), let number = Int(text), number >= minimum else {
                    throw BenchError(description: "\(argument) needs an integer of at least \(minimum)")
                }
                return number
            }
            switch argument {
            case "--pairs": pairs = try value()
            case "--batch": batch = try value()
            case "--features": features = try value()
            case "--lag": lag = try value(minimum: 0)
            default: throw BenchError(description: "unknown option \(argument)")
            }
        }
    }
}

func runFeedbackBench(_ arguments: [String]) async throws {
    let options = try FeedbackBenchOptions(arguments)
    let names = (0..<options.features).map { "f\($0)" }
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("feedback-bench-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }

    let policy = try JoinPolicy(deadlineMs: 7_200_000, retentionMs: 86_400_000, positiveLabel: "1")
    let store = try JoinStore(path: directory + "/join.sqlite", policy: policy)
    let monitor = try Monitor(settings: MonitorSettings(
        windowCount: 2000, windowSeconds: 7 * 86_400, threshold: 0.5, costs: DecisionCosts(),
        drift: DriftThresholds(psi: 0.25, ks: 0.2, chiSquaredPValue: 0.001, scorePSI: 0.25, performanceDrop: 0.05,
                               labelStarvation: TimeSpan(seconds: 86_400)),
        chunkSeconds: 3600, minimumSamples: 200))
    for version in [Int64(1), 2] { monitor.register(model: try benchModel(version: version, names: names)) }
    let decoder = InputDecoder(predictionsTopic: "loop.predictions", policy: policy)

    // Records as the consumer would hand them over: each prediction, then its outcome a minute later.
    // Feature values carry six decimals, as Elec2's do; scores are full-precision doubles.
    print("feedback: preparing \(options.pairs) pairs with \(options.features) features…")
    var records: [ConsumedRecord] = []
    records.reserveCapacity(options.pairs * 2)
    var random = SystemRandomNumberGenerator()
    let start: Int64 = 1_700_000_000_000
    var predictions: [ConsumedRecord] = []
    var outcomes: [ConsumedRecord] = []
    let delayMs = max(60_000, Int64(options.lag) * 100)
    for i in 0..<options.pairs {
        let entity = "e\(i % 64)"
        let timeMs = start + Int64(i) * 100
        let score = Double.random(in: 0...1, using: &random)
        let prediction = Prediction(
            requestId: "req-\(i)", entity: entity, eventTimeMs: timeMs, modelVersion: 1, role: .champion, score: score,
            decision: score >= 0.5, route: .auto,
            features: names.map { FeatureValue(name: $0, value: (Double.random(in: 0...1, using: &random) * 1e6).rounded() / 1e6) },
            challengers: [ChallengerScore(modelVersion: 2, role: .shadow, score: Double.random(in: 0...1, using: &random))])
        predictions.append(ConsumedRecord(topic: "loop.predictions", partition: 0, offset: Int64(i), key: Array(entity.utf8),
                                          value: prediction.bytes))
        let outcomeMs = timeMs + delayMs
        let outcomeTime = Timestamp(seconds: outcomeMs / 1000, nanoseconds: Int32(outcomeMs % 1000) * 1_000_000)
        let event = CloudEvent(
            id: "o\(i)", source: "bench", type: EventType.outcome.description, subject: entity, time: outcomeTime,
            data: .json(["requestId": .string("req-\(i)"), "label": .string(Bool.random(using: &random) ? "1" : "0")]))
        let message = KafkaBinding.encode(event, mode: .binary, key: .subject)
        outcomes.append(ConsumedRecord(
            topic: "loop.events", partition: 0, offset: Int64(i), key: message.key, value: message.value,
            headers: message.headers.map { KafkaHeader(key: $0.name, value: $0.value) }))
    }
    for step in 0..<options.pairs + options.lag {
        if step < options.pairs { records.append(predictions[step]) }
        if step >= options.lag { records.append(outcomes[step - options.lag]) }
    }
    predictions = []
    outcomes = []

    var batches: [[ConsumedRecord]] = []
    var index = 0
    while index < records.count {
        batches.append(Array(records[index..<min(index + options.batch, records.count)]))
        index += options.batch
    }
    records = []

    let pipeline = JoinPipeline(decoder: decoder, store: store, monitor: monitor)
    let output = BenchJoinOutput()
    let clock = ContinuousClock()
    let began = clock.now
    let cpuBegan = processCPUSeconds()
    try await pipeline.run(BatchSequence(batches: batches), output: output)
    let joined = output.joined.withLock { $0 }
    let snapshot = monitor.snapshot(counters: store.counters, reviewQueue: 0)
    let elapsed = clock.now - began
    let cpu = processCPUSeconds() - cpuBegan
    let total = seconds(elapsed)
    let champion = snapshot.versions.first { $0.version == 1 }
    print(String(format: "feedback: %d joined pairs in %.2f s = %.0f pairs/s (batch %d, %d features, 2 versions, outcome lag %d)",
                 joined, total, Double(joined) / total, options.batch, options.features, options.lag))
    print(String(format: "feedback: process CPU time %.2f s (user + system) = %.0f pairs per CPU-second",
                 cpu, Double(joined) / cpu))
    let stages = pipeline.stageTimes.current
    let perPair = { (seconds: Double) in seconds * 1e6 / Double(max(1, joined)) }
    print(String(format: "feedback: thread CPU per pair (µs): decode %.2f, join+store %.2f, outbox confirm %.2f, monitor %.2f",
                 perPair(stages.decode), perPair(stages.apply), perPair(stages.confirm), perPair(stages.monitor)))
    print("feedback: load average \(loadAverage())")
    print(String(format: "feedback: champion count-window AUC %.3f, max feature PSI %.4f, snapshot records %d",
                 champion?.countWindow.auc ?? .nan, champion?.drift.map(\.psi).max() ?? .nan, snapshot.records.count))
}

/// The consumer's batches, already fetched.
struct BatchSequence: AsyncSequence, Sendable {
    let batches: [[ConsumedRecord]]

    struct AsyncIterator: AsyncIteratorProtocol {
        var rest: ArraySlice<[ConsumedRecord]>

        mutating func next() async -> [ConsumedRecord]? { rest.popFirst() }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(rest: batches[...]) }
}

/// Acknowledges every labeled example at once, as a broker would (offsets are the outbox sequence numbers).
final class BenchJoinOutput: JoinOutput {
    let joined = Mutex(0)

    func send(_ outbox: [OutboxEntry]) async throws -> [DeliveryReport] {
        outbox.map { DeliveryReport(topic: "loop.labeled", partition: $0.partition, offset: $0.sequence) }
    }

    func applied(_ result: JoinBatchResult) { joined.withLock { $0 += result.labeled.count } }

    func processed(_ records: [ConsumedRecord]) {}

    func stop() async {}
}

/// A registered model version whose training baseline is uniform deciles for every feature.
func benchModel(version: Int64, names: [String]) throws -> ModelVersionRecord {
    let deciles = BinnedDistribution(edges: (1...9).map { Double($0) / 10 }, proportions: [Double](repeating: 0.1, count: 10))
    let training = TrainingSummary(
        exampleCount: 10_000, positiveCount: 5000,
        features: names.map { FeatureSummary(name: $0, count: 10_000, numeric: NumericSummary(mean: 0.5, std: 0.29, min: 0, max: 1, bins: deciles)) },
        scores: ScoreSummary(count: 10_000, mean: 0.5, bins: deciles))
    let artifact = ModelArtifact(
        schema: FeatureSchema(features: names.map { FeatureSpec(name: $0, kind: .numeric) }), training: training,
        body: .logisticRegression(LogisticRegressionModel(
            intercept: 0, coefficients: names.map { _ in [0.1] }, means: names.map { _ in 0.5 },
            scales: names.map { _ in 0.29 }, l2: 1, classWeight: "none", iterations: 1, converged: true)))
    return ModelVersionRecord(
        version: version, status: .champion, parent: nil, trigger: "bench", createdAtMs: 0, reasons: [], lineage: [:],
        artifact: try JSONValue.parse(Array(artifact.jsonData())), card: "")
}

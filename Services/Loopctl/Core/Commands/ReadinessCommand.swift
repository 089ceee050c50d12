import ArgumentParser
import Contracts
import Foundation
import Kafka

/// `loopctl readiness`: the "is it worth scaling?" checklist from live data.
public struct ReadinessCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "readiness",
        abstract: "Answer \"is it worth scaling?\" from the loop's topics, each item pass/warn/fail with its numbers.",
        discussion: """
            Reads loop.labeled, loop.predictions, loop.monitoring, loop.events.dlq and loop.events from the \
            beginning and checks: business value (cost per decision vs the baseline policy, from loop.yaml's \
            cost matrix), output quality (ROC AUC and calibration per model version), data continuity (event \
            rate, gaps, DLQ share, late share), production feasibility (latency percentiles, throughput), user \
            feedback (review volume and agreement) and the success trend (AUC and accuracy, first vs last third; \
            open alerts). Give --config for the costs and thresholds. Exits with status 1 if any item fails.
            """)

    @OptionGroup(title: "Connection") public var connection: ConnectionOptions
    @Flag(name: .long, help: "Print the checklist as JSON.") public var json = false

    public init() {}

    public func run() async throws {
        let resolved = try connection.resolve()
        let reader = TopicReader(config: resolved.kafka, logger: CLILogging.logger())
        let topics = resolved.topics
        var input = ReadinessChecklist.Input()
        if let config = resolved.loopConfig { input.apply(config) }
        let labeled = try await reader.readAll(topics.labeled, missingIsEmpty: true)
        input.labeled = labeled.compactMap { $0.value.flatMap { try? LabeledExample(bytes: $0) } }
        let predictions = try await reader.readAll(topics.predictions, missingIsEmpty: true)
        input.predictions = predictions.compactMap { $0.value.flatMap { try? Prediction(bytes: $0) } }
        input.predictionWallTimesMs = predictions.compactMap { $0.timestamp.map { Int64($0.timeIntervalSince1970 * 1000) } }
        input.monitoring = try await reader.readAll(topics.monitoring, missingIsEmpty: true)
            .compactMap { $0.value.flatMap { try? MonitoringRecord(bytes: $0) } }
        input.deadLetters = try await reader.readAll(topics.deadLetters, missingIsEmpty: true).count
        input.events = ReadinessChecklist.Input.eventFacts(try await reader.readAll(topics.events, missingIsEmpty: true))
        let items = ReadinessChecklist.evaluate(input)
        print(json ? String(decoding: ReadinessChecklist.json(items).canonicalBytes(), as: UTF8.self) : ReadinessChecklist.text(items))
        if items.contains(where: { $0.status == .fail }) { throw ExitCode(1) }
    }
}

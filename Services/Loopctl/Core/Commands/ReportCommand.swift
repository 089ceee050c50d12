import ArgumentParser
import Contracts
import Foundation

/// `loopctl report`: the end-of-replay summary and a self-contained HTML report.
public struct ReportCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Summarize the loop's topics and write a self-contained HTML report.",
        discussion: """
            Reads loop.events, loop.predictions, loop.labeled, loop.models, loop.monitoring and loop.events.dlq \
            from the beginning to their current end and prints: events, predictions (by route and by model), \
            labels, dead letters (by reason), model versions (trigger, holdout AUC, promoted or rejected and \
            why), the prequential ROC AUC and accuracy of the served predictions against the baseline policy, \
            and the alerts raised. Then writes an HTML page with inline SVG charts (served quality over time \
            with promotion markers, drift per feature) and the summary tables. Give --config for the decision \
            threshold, the baseline score and the PSI threshold. --wait-for-labels N first waits until \
            loop.labeled holds N records (or --timeout passes), e.g. for a replay to drain.
            """)

    @OptionGroup(title: "Connection") public var connection: ConnectionOptions
    @Option(name: .long, help: ArgumentHelp("Where to write the HTML report.", valueName: "path"))
    public var out = "state/report.html"
    @Option(name: .long, help: ArgumentHelp("Wait until loop.labeled holds at least N records first.", valueName: "N"))
    public var waitForLabels: Int64?
    @Option(name: .long, help: ArgumentHelp("Seconds --wait-for-labels waits at most.", valueName: "seconds"))
    public var timeout: Double = 600
    @Option(name: .long, help: ArgumentHelp(
        "Labeled examples per point of the rolling quality chart (default: about a twentieth of them, 20…1000).",
        valueName: "n"))
    public var window: Int?

    public init() {}

    public mutating func validate() throws {
        guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be a positive number of seconds") }
        if let waitForLabels, waitForLabels < 0 { throw ValidationError("--wait-for-labels must not be negative") }
        if let window, window < 1 { throw ValidationError("--window must be at least 1") }
        guard !out.isEmpty else { throw ValidationError("--out must be a path") }
    }

    public func run() async throws {
        let resolved = try connection.resolve()
        let reader = TopicReader(config: resolved.kafka, logger: CLILogging.logger())
        if let target = waitForLabels {
            let count = try await TopicCount.wait(
                for: target, in: resolved.topics.labeled, reader: reader, timeout: .milliseconds(Int64(timeout * 1000))
            ) { count in
                print("waiting for labels: \(Format.count(Int(count)))/\(Format.count(Int(target)))")
            }
            if count < target {
                print("timed out after \(Format.duration(timeout)) with \(Format.count(Int(count))) labels; reporting what is there")
            }
        }
        let summary = try await Self.summary(resolved, reader: reader, window: window)
        print(summary.text)
        let path = try Self.write(HTMLReport.html(summary), to: out)
        print("\nreport written to \(path)")
    }

    /// Reads the topics of `connection` and computes the summary with its loop.yaml policy.
    public static func summary(_ connection: Connection, reader: TopicReader, window: Int? = nil) async throws(LoopctlError) -> ReplaySummary {
        var input = try await ReplaySummary.Input.read(connection.topics, reader: reader)
        if let config = connection.loopConfig { input.apply(config) }
        input.window = window
        return ReplaySummary(input)
    }

    /// Writes `html` to `path` (creating its directory); returns the absolute path.
    public static func write(_ html: String, to path: String) throws(LoopctlError) -> String {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(html.utf8).write(to: url, options: .atomic)
        } catch {
            throw LoopctlError(.badArgument, "cannot write the report to \(path): \(error.localizedDescription)")
        }
        return url.path
    }
}

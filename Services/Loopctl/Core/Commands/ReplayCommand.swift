import ArgumentParser
import Contracts
import Foundation

/// `loopctl replay`: an existing system, played back from a CSV.
public struct ReplayCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replay a CSV as score requests, observations and delayed outcomes, in event-time order.",
        discussion: """
            Each row becomes a score request (loop.score_request.v1, data {requestId, fields}) and/or an \
            observation (loop.observation.v1), and - when it has a label - an outcome (loop.outcome.v1, data \
            {requestId, label}) the label delay later in event time. Events go to loop.events.raw through Kafka \
            (CloudEvents binary mode, key = entity) or to ingest's POST /v1/events (batch mode, with an API key).

            Event ids are <requestId>/<kind> with requestId = <prefix><row id>, so replaying the same file \
            again produces the same ids and ingest drops the duplicates.

            The mapping file (YAML or JSON) says which columns are what; flags override it:

              name: elec2
              columns: {id: id, entity: entity, time: ts, label: label}
              time: {format: rfc3339, zone: UTC}      # zone: for times written without an offset
              fields: [dow, period, nswprice]         # columns sent as data fields
              types: {dow: int}                       # else loop.yaml's types, else inferred
              scoreRequests: all                      # all | none | {fields: [...], where: {column: c, in: [v]}}
              observations: all
              labelDelay: 30m                         # a time span, or N periods (the entity's N-th next row)

            Examples:
              loopctl replay examples/elec2/elec2.csv --mapping examples/elec2/replay.yaml
              loopctl replay data.csv --time-column ts --entity-column user --fields a,b --label-column y --label-delay 1h --speed 3600
            """)

    @OptionGroup(title: "Connection")
    public var connection: ConnectionOptions

    @Argument(help: ArgumentHelp("The CSV file (header line first).", valueName: "csv"))
    public var csv: String

    @Option(name: .long, help: ArgumentHelp("Mapping file, YAML or JSON (flags below override it).", valueName: "path"))
    public var mapping: String?

    @Option(name: .long, help: ArgumentHelp("Dataset name: default source /replay/<name>, requestIds <name>-<id>.", valueName: "name"))
    public var name: String?
    @Option(name: .long, help: ArgumentHelp("CloudEvents source of every event.", valueName: "uri"))
    public var source: String?
    @Option(name: .long, help: ArgumentHelp("Column with the unique row id (default: the row number).", valueName: "column"))
    public var idColumn: String?
    @Option(name: .long, help: ArgumentHelp("Column with the entity (subject, Kafka key).", valueName: "column"))
    public var entityColumn: String?
    @Option(name: .long, help: ArgumentHelp("Entity of every row, when there is no entity column.", valueName: "entity"))
    public var entity: String?
    @Option(name: .long, help: ArgumentHelp("Column with the event time.", valueName: "column"))
    public var timeColumn: String?
    @Option(name: .long, help: ArgumentHelp("rfc3339, epoch_seconds or epoch_milliseconds.", valueName: "format"))
    public var timeFormat: String?
    @Option(name: .long, help: ArgumentHelp("Offset of times written without one: UTC or ±hh:mm.", valueName: "zone"))
    public var timeZone: String?
    @Option(name: .long, help: ArgumentHelp("Columns sent as data fields, comma-separated.", valueName: "a,b,c"))
    public var fields: String?
    @Option(name: .long, help: ArgumentHelp("Column with the label (no outcomes without one).", valueName: "column"))
    public var labelColumn: String?
    @Option(name: .long, help: ArgumentHelp("Which rows become score requests: all or none.", valueName: "all|none"))
    public var scoreRequests: String?
    @Option(name: .long, help: ArgumentHelp("Which rows become observations: all or none.", valueName: "all|none"))
    public var observations: String?
    @Option(name: .long, help: ArgumentHelp(
        "Event time from a row to its outcome: a span (30m, 2h) or periods (1 period = the entity's next row).",
        valueName: "delay"))
    public var labelDelay: String?

    @Option(name: .long, help: ArgumentHelp("Send through kafka (to loop.events.raw) or http (ingest's POST /v1/events).", valueName: "kafka|http"))
    public var via: String = "kafka"
    @Option(name: .long, help: ArgumentHelp("Topic to write to with --via kafka (default <prefix>.events.raw).", valueName: "topic"))
    public var topic: String?
    @Option(name: .long, help: ArgumentHelp(
        "Event seconds per wall second, e.g. 3600 = one hour of event time per second (default: as fast as possible).",
        valueName: "factor"))
    public var speed: Double?
    @Option(name: .long, help: ArgumentHelp("Events per Kafka send or HTTP request (default 1000 for kafka, 200 for http).", valueName: "n"))
    public var batchSize: Int?
    @Option(name: .long, help: ArgumentHelp("Replay only the first n data rows of the file.", valueName: "n"))
    public var limit: Int?
    @Flag(name: .long, help: "Print the events as JSON lines (structured mode) instead of sending them.")
    public var dryRun = false
    @Flag(name: .long, help: "No progress output.")
    public var quiet = false

    public init() {}

    public func run() async throws {
        let resolved = try connection.resolve()
        var table = try CSVTable.load(path: csv)
        if let limit {
            guard limit >= 0 else { throw ValidationError("--limit must be 0 or more") }
            table.rows = Array(table.rows.prefix(limit))
        }
        let mapping = try effectiveMapping()
        let kinds = resolved.loopConfig?.fields.mapValues(\.kind) ?? [:]
        let plan = try ReplayPlan(table: table, mapping: mapping, file: csv, fieldKinds: kinds)
        if dryRun {
            for event in plan.events() { print(String(decoding: JSONFormat.encode(event), as: UTF8.self)) }
            return
        }
        if let speed, !(speed > 0) { throw ValidationError("--speed must be positive") }
        let runner = ReplayRunner(
            speed: speed, progress: quiet ? ProgressDisplay(style: .silent) { _ in } : .standardError())
        let summary: ReplayRunner.Summary
        switch via {
        case "kafka":
            let sink = try KafkaEventSink(
                config: resolved.kafka, topic: topic ?? resolved.topics.rawEvents, batchSize: batchSize ?? 1000,
                logger: CLILogging.logger())
            summary = try await runner.run(plan, to: sink)
        case "http":
            let sink = HTTPEventSink(ingestURL: resolved.url(.ingest), apiKey: resolved.apiKey, batchSize: batchSize ?? 200)
            summary = try await runner.run(plan, to: sink)
        default:
            throw ValidationError("--via must be kafka or http, not `\(via)`")
        }
        print(summary.text)
    }

    /// The mapping file (if any) with the flags applied.
    func effectiveMapping() throws(LoopctlError) -> ReplayMapping {
        var mapping: ReplayMapping
        if let path = self.mapping {
            mapping = try ReplayMapping.load(path: path)
        } else {
            guard let timeColumn else {
                throw LoopctlError(.badMapping, "give --mapping <file> or at least --time-column (and --entity-column or --entity)")
            }
            let name = URL(fileURLWithPath: csv).deletingPathExtension().lastPathComponent
            mapping = ReplayMapping(name: name, timeColumn: timeColumn, fields: [])
        }
        if let name { mapping.name = name }
        if let source { mapping.source = source }
        if let idColumn { mapping.idColumn = idColumn }
        if let entityColumn { mapping.entityColumn = entityColumn }
        if let entity { mapping.entity = entity }
        if let timeColumn { mapping.timeColumn = timeColumn }
        if let timeFormat {
            guard let format = ReplayMapping.TimeFormat(rawValue: timeFormat) else {
                throw LoopctlError(.badArgument, "--time-format `\(timeFormat)` is not one of rfc3339, epoch_seconds, epoch_milliseconds")
            }
            mapping.timeFormat = format
        }
        if let timeZone { mapping.timeZone = timeZone }
        if let fields { mapping.fields = fields.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        if let labelColumn { mapping.labelColumn = labelColumn }
        if let scoreRequests { mapping.scoreRequests = try Self.selection(scoreRequests, flag: "--score-requests") }
        if let observations { mapping.observations = try Self.selection(observations, flag: "--observations") }
        if let labelDelay {
            guard let delay = ReplayMapping.LabelDelay(labelDelay) else {
                throw LoopctlError(.badArgument, "--label-delay `\(labelDelay)` is neither a time span (30m, 2h) nor periods (1 period)")
            }
            mapping.labelDelay = delay
        }
        return mapping
    }

    static func selection(_ text: String, flag: String) throws(LoopctlError) -> ReplayMapping.Selection {
        switch text.lowercased() {
        case "all": .all
        case "none": .none
        default: throw LoopctlError(.badArgument, "\(flag) must be all or none, not `\(text)`")
        }
    }
}
